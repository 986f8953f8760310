"""Messages and checks VirtualService and DestinationRule share: destinations, string
matches, header operations, selectors, and the validators for regexes and weights."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Self

import re2
from annotated_types import Ge, Le
from pydantic import AfterValidator, Strict, StringConstraints, model_validator

from ..errors import invalid
from ..meta import (
    IstioModel,
    Percentage,
    Port,
    Str,
    StrMap,
)

NETWORKING_VERSIONS = (
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
)

NonEmptyStr = Annotated[str, Strict(), StringConstraints(min_length=1)]


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise ValueError("must be a DNS label (lowercase letters, digits and '-', at most 63)")
    return value


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DnsLabel = Annotated[str, Strict(), AfterValidator(_dns_label)]
"""A Kubernetes DNS-1123 label, as Istio requires of subset names."""
Weight = Annotated[int, Strict(), Ge(0), Le(2**31 - 1)]
Count = Annotated[int, Strict(), Ge(0), Le(2**31 - 1)]
WholePercent = Annotated[int, Strict(), Ge(0), Le(100)]
HttpStatus = Annotated[int, Strict(), Ge(200), Le(599)]
RedirectCode = Annotated[int, Strict(), Ge(300), Le(399)]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error goes to the user, not to stderr


# Envoy refuses (NACKs) regexes whose compiled RE2 program is larger than this by default
# (runtime key re2.max_program_size.error_level): catch it here, with the field path.
ENVOY_MAX_PROGRAM_SIZE = 100


def _check_re2(pattern: str) -> str:
    # Envoy matches with RE2; Python's re accepts things (lookaround, backrefs) RE2 rejects.
    try:
        compiled = re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(f"not a valid RE2 regex: {detail}") from None
    if compiled.programsize > ENVOY_MAX_PROGRAM_SIZE:
        raise ValueError(
            f"regex too complex for Envoy: RE2 program size {compiled.programsize} > "
            f"{ENVOY_MAX_PROGRAM_SIZE}"
        )
    return pattern


Regex = Annotated[str, Strict(), AfterValidator(_check_re2)]


def _check_subnet(value: str) -> str:
    # Istio accepts an address or a CIDR block (host bits set, as Go's ParseCIDR does).
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError(f"not an IP address or CIDR block: {exc}") from None
    return value


Subnet = Annotated[str, Strict(), AfterValidator(_check_subnet)]


def _is_set(value: object) -> bool:
    return value is not None and value != () and value != {}


def _one_of(model: IstioModel, *names: str, required: bool = False) -> None:
    """Enforce a proto one-of: at most one of ``names`` set (exactly one if ``required``)."""
    fields = type(model).model_fields
    wire = [fields[n].alias or n for n in names]
    chosen = [w for n, w in zip(names, wire, strict=True) if _is_set(getattr(model, n))]
    if len(chosen) > 1:
        raise invalid(f"only one of {', '.join(wire)} may be set (got {', '.join(chosen)})")
    if required and not chosen:
        raise invalid(f"must set one of {', '.join(wire)}")


# --- shared messages -------------------------------------------------------------------


class PortSelector(IstioModel):
    number: Port


class Percent(IstioModel):
    value: Percentage = 0.0


class Destination(IstioModel):
    host: NonEmptyStr
    subset: Str | None = None
    port: PortSelector | None = None


class StringMatch(IstioModel):
    """exact | prefix | regex; an empty match means "present" where Istio allows it."""

    exact: Str | None = None
    prefix: Str | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        _one_of(self, "exact", "prefix", "regex")
        return self

    @property
    def is_empty(self) -> bool:
        return self.exact is None and self.prefix is None and self.regex is None


class WorkloadSelector(IstioModel):
    match_labels: StrMap = {}


# --- VirtualService --------------------------------------------------------------------


_TOKEN = re2.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_header_name(name: str, *at: str | int) -> None:
    # Envoy NACKs the whole route table for these; say so at apply time instead.
    if name.startswith(":") or name.lower() == "host":
        raise invalid(
            f"header {name!r} cannot be modified (host and pseudo-headers; "
            "use rewrite.authority to change the host)",
            *at,
        )
    if not _TOKEN.fullmatch(name):
        raise invalid(f"{name!r} is not a valid HTTP header name", *at)


class HeaderOperations(IstioModel):
    set: StrMap = {}
    add: StrMap = {}
    remove: tuple[Str, ...] = ()

    @model_validator(mode="after")
    def _names(self) -> Self:
        for op in ("set", "add"):
            for name in getattr(self, op):
                _check_header_name(name, op, name)
        for i, name in enumerate(self.remove):
            _check_header_name(name, "remove", i)
        return self


class Headers(IstioModel):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


__all__ = [
    "NETWORKING_VERSIONS",
    "Destination",
    "HeaderOperations",
    "Headers",
    "Percent",
    "PortSelector",
    "StringMatch",
    "WorkloadSelector",
]

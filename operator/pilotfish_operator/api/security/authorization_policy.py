"""AuthorizationPolicy (security.istio.io): who may call a workload, and how.

Checked as Istio checks it: ports are port numbers, IP blocks addresses or CIDR
blocks, `when` keys among Istio's documented attributes, `{*}`/`{**}` path templates
well formed, CUSTOM names a provider and only CUSTOM does.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, Field, Strict, StringConstraints, model_validator

from ..errors import invalid
from ..meta import IstioModel, IstioResource, Str
from ..networking.common import NonEmptyStr, Subnet, WorkloadSelector
from .peer_authentication import SECURITY_VERSIONS


def _port(value: str) -> str:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError("not a port number (1-65535)")
    return value


def _path(value: str) -> str:
    # Istio's path templates: `{*}` one segment, `{**}` the rest; only whole segments.
    if "{" in value or "}" in value:
        segments = value.split("/")
        for i, seg in enumerate(segments):
            if ("{" in seg or "}" in seg) and seg not in ("{*}", "{**}"):
                raise ValueError("a template must be a whole segment: {*} or {**}")
            if seg == "{**}" and i != len(segments) - 1:
                raise ValueError("{**} must be the last segment")
    elif value.count("*") > 1 or (
        "*" in value and not (value.startswith("*") or value.endswith("*"))
    ):
        raise ValueError("'*' only as the whole value, a prefix or a suffix")
    return value


PortStr = Annotated[str, AfterValidator(_port)]
PathStr = Annotated[str, AfterValidator(_path)]


def _service_account(value: str) -> str:
    if not value or "*" in value or value.count("/") > 1 or "" in value.split("/"):
        raise ValueError("must be <namespace>/<serviceaccount> or <serviceaccount>, no '*'")
    return value


ServiceAccountRef = Annotated[str, Strict(), AfterValidator(_service_account)]

# Istio's documented `when` keys (exact), and the ones with a bracketed name.
_KEYS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "source.trustDomain",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    }
)
_BRACKETED = re.compile(
    r"^(request\.headers|request\.auth\.claims)\[[^\[\]]+\](\[[^\[\]]+\])*$"
    r"|^experimental\.envoy\.filters\.[\w.]+\[[^\[\]]+\]$"  # a filter's metadata, one key
)


def _key(value: str) -> str:
    if value in _KEYS or _BRACKETED.match(value):
        return value
    raise ValueError(
        "unknown attribute; one of request.headers[<name>], request.auth.claims[<claim>], "
        "experimental.envoy.filters.<filter>[<key>], " + ", ".join(sorted(_KEYS))
    )


class Source(IstioModel):
    principals: tuple[Str, ...] = ()
    not_principals: tuple[Str, ...] = ()
    request_principals: tuple[Str, ...] = ()
    not_request_principals: tuple[Str, ...] = ()
    namespaces: tuple[Str, ...] = ()
    not_namespaces: tuple[Str, ...] = ()
    ip_blocks: tuple[Subnet, ...] = ()
    not_ip_blocks: tuple[Subnet, ...] = ()
    remote_ip_blocks: tuple[Subnet, ...] = ()
    not_remote_ip_blocks: tuple[Subnet, ...] = ()
    # `<namespace>/<name>` or `<name>` (the policy's namespace); matched as principals.
    service_accounts: tuple[ServiceAccountRef, ...] = ()
    not_service_accounts: tuple[ServiceAccountRef, ...] = ()
    trust_domains: tuple[NonEmptyStr, ...] = ()
    not_trust_domains: tuple[NonEmptyStr, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.service_accounts or self.not_service_accounts) and (
            self.principals or self.not_principals or self.namespaces or self.not_namespaces
        ):
            raise invalid(
                "cannot set serviceAccounts with namespaces or principals", "serviceAccounts"
            )
        return self


class Operation(IstioModel):
    hosts: tuple[Str, ...] = ()
    not_hosts: tuple[Str, ...] = ()
    ports: tuple[PortStr, ...] = ()
    not_ports: tuple[PortStr, ...] = ()
    methods: tuple[Str, ...] = ()
    not_methods: tuple[Str, ...] = ()
    paths: tuple[PathStr, ...] = ()
    not_paths: tuple[PathStr, ...] = ()


class RuleFrom(IstioModel):
    source: Source = Source()


class RuleTo(IstioModel):
    operation: Operation = Operation()


class Condition(IstioModel):
    key: Annotated[str, AfterValidator(_key)]
    values: tuple[Str, ...] = ()
    not_values: tuple[Str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.values and not self.not_values:
            raise invalid("needs values or notValues", "values")
        if self.key == "destination.port":
            for i, v in enumerate((*self.values, *self.not_values)):
                if not v.isdigit() or not 1 <= int(v) <= 65535:
                    raise invalid(f"{v!r} is not a port number", "values", i)
        return self


_GROUP = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_KIND = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"


class Rule(IstioModel):
    from_: tuple[RuleFrom, ...] = Field(default=(), alias="from")
    to: tuple[RuleTo, ...] = ()
    when: tuple[Condition, ...] = ()


class PolicyTargetReference(IstioModel):
    group: Annotated[str, Strict(), StringConstraints(pattern=_GROUP, max_length=253)] = ""
    kind: Annotated[str, Strict(), StringConstraints(pattern=_KIND, max_length=63)]
    name: Annotated[str, Strict(), StringConstraints(min_length=1, max_length=253)]
    namespace: Str = ""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.namespace:  # Istio: "cross namespace referencing is not currently supported"
            raise invalid("must be empty: a reference to another namespace", "namespace")
        return self


class ExtensionProvider(IstioModel):
    name: NonEmptyStr


class AuthorizationPolicySpec(IstioModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    rules: tuple[Rule, ...] = ()
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] = "ALLOW"
    provider: ExtensionProvider | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.action == "CUSTOM" and self.provider is None:
            raise invalid("a CUSTOM policy needs a provider", "provider")
        if self.action != "CUSTOM" and self.provider is not None:
            raise invalid("only a CUSTOM policy has a provider", "provider")
        if self.selector is not None and (self.target_ref is not None or self.target_refs):
            raise invalid("selector and targetRefs cannot be combined", "targetRefs")
        return self


class AuthorizationPolicy(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = SECURITY_VERSIONS
    KIND: ClassVar[str] = "AuthorizationPolicy"

    spec: AuthorizationPolicySpec = AuthorizationPolicySpec()

"""What the Gateway API (gateway.networking.k8s.io) kinds share: the resource base,
references to parents and backends, host names and the label selector.

The field names and defaults are the standard channel's. Unknown fields are ignored
rather than refused: these CRDs are often the cluster's (installed by another
project, maybe newer than ours), and a field we do not model must not take a route
away; what we do not implement is reported in the route's status instead.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, StringConstraints
from pydantic.alias_generators import to_camel

from ..meta import ObjectMeta, Resource, Str, StrMap

GROUP = "gateway.networking.k8s.io"
V1 = (f"{GROUP}/v1", f"{GROUP}/v1beta1")
"""Gateway, GatewayClass, HTTPRoute: v1 stored, v1beta1 served with the same schema."""

Name = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=253)]
SectionName = Annotated[
    str, Strict(), StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=253)
]
PortNumber = Annotated[int, Strict(), Ge(1), Le(65535)]
BackendWeight = Annotated[int, Strict(), Ge(0), Le(1_000_000)]

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


def _check_hostname(value: str) -> str:
    # The Gateway API's Hostname: a DNS name, optionally with one leading `*.` label;
    # never an IP address.
    if not _HOSTNAME.match(value) or len(value) > 253:
        raise ValueError(
            f"{value!r} is not a hostname (lower-case DNS labels, optionally a leading '*.')"
        )
    if re.fullmatch(r"[0-9.]+", value):
        raise ValueError(f"{value!r} is an IP address; a hostname is required")
    return value


Hostname = Annotated[str, Strict(), AfterValidator(_check_hostname)]


class GatewayApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class GatewayApiResource(GatewayApiModel, Resource):
    """A Gateway API kind; status is the controller's and ignored on input."""

    api_version: Str
    kind: Str
    metadata: ObjectMeta
    status: dict[str, Any] | None = None


class ParentReference(GatewayApiModel):
    """A route's parent: a Gateway (optionally one listener by `sectionName` or `port`),
    or, for the mesh (GAMMA), a Service (group "", kind Service)."""

    group: Str = GROUP
    kind: Str = "Gateway"
    namespace: Name | None = None
    name: Name
    section_name: SectionName | None = None
    port: PortNumber | None = None

    @property
    def is_service(self) -> bool:
        return self.group in ("", "core") and self.kind == "Service"

    @property
    def is_gateway(self) -> bool:
        return self.group == GROUP and self.kind == "Gateway"


class BackendObjectReference(GatewayApiModel):
    group: Str = ""
    kind: Str = "Service"
    name: Name
    namespace: Name | None = None
    port: PortNumber | None = None

    @property
    def is_service(self) -> bool:
        return self.group in ("", "core") and self.kind == "Service"


class LabelSelectorRequirement(GatewayApiModel):
    key: Name
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[Str, ...] = ()


class LabelSelector(GatewayApiModel):
    match_labels: StrMap = {}
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for e in self.match_expressions:
            present = e.key in labels
            if e.operator == "In" and not (present and labels[e.key] in e.values):
                return False
            if e.operator == "NotIn" and present and labels[e.key] in e.values:
                return False
            if e.operator == "Exists" and not present:
                return False
            if e.operator == "DoesNotExist" and present:
                return False
        return True


def gateway_api_versions(*versions: str) -> tuple[str, ...]:
    return tuple(f"{GROUP}/{v}" for v in versions)

"""GatewayClass, Gateway and ReferenceGrant (gateway.networking.k8s.io).

A Gateway's listeners are what a gateway proxy serves: port, protocol (HTTP, HTTPS,
TLS, TCP), hostname, TLS (Terminate with certificateRefs to Secrets, or Passthrough),
and which routes may attach (`allowedRoutes`: namespaces Same/All/Selector, kinds).
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from ..errors import invalid
from ..meta import Str
from .common import (
    GROUP,
    V1,
    GatewayApiModel,
    GatewayApiResource,
    Hostname,
    LabelSelector,
    Name,
    PortNumber,
    SectionName,
    gateway_api_versions,
)

CONTROLLER = "pilotfish.io/gateway-controller"
"""The controllerName of GatewayClasses Pilotfish implements."""
CLASS_NAMES = ("pilotfish", "istio")
"""gatewayClassNames Pilotfish serves even without a GatewayClass object (`istio`, so
manifests written for Istio work unchanged)."""

ListenerProtocol = Literal["HTTP", "HTTPS", "TLS", "TCP"]
ROUTE_KINDS: dict[str, tuple[str, ...]] = {
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
    "TCP": ("TCPRoute",),
}
"""The route kinds a listener of each protocol accepts (when allowedRoutes.kinds is empty)."""


class GatewayClassSpec(GatewayApiModel):
    controller_name: Name
    description: Str | None = None


class GatewayClass(GatewayApiResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = V1
    KIND: ClassVar[str] = "GatewayClass"
    CLUSTER_SCOPED: ClassVar[bool] = True
    spec: GatewayClassSpec


class SecretObjectReference(GatewayApiModel):
    group: Str = ""
    kind: Str = "Secret"
    name: Name
    namespace: Name | None = None


class GatewayTLSConfig(GatewayApiModel):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: tuple[SecretObjectReference, ...] = ()
    options: dict[str, Str] = {}

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.mode == "Terminate" and not self.certificate_refs:
            raise invalid("mode Terminate needs at least one certificateRef", "certificateRefs")
        if self.mode == "Passthrough" and self.certificate_refs:
            raise invalid("mode Passthrough takes no certificateRefs", "certificateRefs")
        return self


class RouteNamespaces(GatewayApiModel):
    from_: Literal["All", "Same", "Selector"] = Field("Same", alias="from")
    selector: LabelSelector | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.from_ == "Selector" and self.selector is None:
            raise invalid("from: Selector needs a selector", "selector")
        return self


class RouteGroupKind(GatewayApiModel):
    group: Str = GROUP
    kind: Name


class AllowedRoutes(GatewayApiModel):
    namespaces: RouteNamespaces = RouteNamespaces()
    kinds: tuple[RouteGroupKind, ...] = ()


class Listener(GatewayApiModel):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: ListenerProtocol
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.protocol == "HTTPS" and (self.tls is None or self.tls.mode != "Terminate"):
            raise invalid("an HTTPS listener needs tls with mode Terminate", "tls")
        if self.protocol == "TLS" and self.tls is None:
            raise invalid("a TLS listener needs tls (Passthrough or Terminate)", "tls")
        if self.protocol in ("HTTP", "TCP") and self.tls is not None:
            raise invalid(f"a {self.protocol} listener takes no tls", "tls")
        if self.protocol == "TCP" and self.hostname is not None:
            raise invalid("a TCP listener takes no hostname", "hostname")
        return self

    def route_kinds(self) -> tuple[str, ...]:
        """The route kinds that may attach (allowedRoutes.kinds of our group, or the
        protocol's)."""
        wanted = [k.kind for k in self.allowed_routes.kinds if k.group == GROUP]
        kinds = ROUTE_KINDS[self.protocol]
        if self.protocol == "TLS" and self.tls is not None and self.tls.mode == "Terminate":
            kinds = ("TLSRoute", "TCPRoute")  # decrypted bytes go on as TCP (as Istio)
        if not self.allowed_routes.kinds:
            return kinds
        return tuple(k for k in wanted if k in kinds)


class GatewayAddress(GatewayApiModel):
    type: Str = "IPAddress"
    value: Str


class GatewayInfrastructure(GatewayApiModel):
    """Labels and annotations for what is deployed for the Gateway (its ServiceAccount,
    Deployment, pod template and Service)."""

    labels: dict[Str, Str] = {}
    annotations: dict[Str, Str] = {}


class GatewaySpec(GatewayApiModel):
    gateway_class_name: Name
    listeners: tuple[Listener, ...]
    addresses: tuple[GatewayAddress, ...] = ()
    infrastructure: GatewayInfrastructure | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.listeners:
            raise invalid("at least one listener is required", "listeners")
        seen: dict[str, int] = {}
        for i, listener in enumerate(self.listeners):
            if listener.name in seen:
                raise invalid(
                    f"name {listener.name!r} is already listeners[{seen[listener.name]}]'s",
                    "listeners",
                    i,
                    "name",
                )
            seen[listener.name] = i
        return self


class KubernetesGateway(GatewayApiResource):
    """The Gateway API's Gateway. Inside Pilotfish its kind is `KubernetesGateway`
    (Istio's internal name for it too): Istio's `Gateway` has the same kind name."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = V1
    KIND: ClassVar[str] = "Gateway"
    STORE_KIND: ClassVar[str] = "KubernetesGateway"
    spec: GatewaySpec


class ReferenceGrantFrom(GatewayApiModel):
    group: Str
    kind: Name
    namespace: Name


class ReferenceGrantTo(GatewayApiModel):
    group: Str
    kind: Name
    name: Name | None = None


class ReferenceGrantSpec(GatewayApiModel):
    from_: tuple[ReferenceGrantFrom, ...] = Field(alias="from")
    to: tuple[ReferenceGrantTo, ...]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.from_:
            raise invalid("at least one entry is required", "from")
        if not self.to:
            raise invalid("at least one entry is required", "to")
        return self


class ReferenceGrant(GatewayApiResource):
    """Lets objects of `from` (group, kind, namespace) refer to objects of `to` in the
    grant's own namespace: a route's backend or a listener's certificate elsewhere."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = gateway_api_versions("v1beta1", "v1alpha2")
    KIND: ClassVar[str] = "ReferenceGrant"
    spec: ReferenceGrantSpec

    def permits(self, group: str, kind: str, namespace: str, to: tuple[str, str, str]) -> bool:
        """Whether an object (group, kind) in `namespace` may refer to `to` = (group,
        kind, name) in this grant's namespace."""
        tg, tk, tn = to
        return any(
            f.group == group and f.kind == kind and f.namespace == namespace
            for f in self.spec.from_
        ) and any(
            t.group == tg and t.kind == tk and (t.name is None or t.name == tn)
            for t in self.spec.to
        )


__all__ = [
    "CLASS_NAMES",
    "CONTROLLER",
    "AllowedRoutes",
    "GatewayAddress",
    "GatewayClass",
    "GatewayClassSpec",
    "GatewayInfrastructure",
    "GatewaySpec",
    "GatewayTLSConfig",
    "KubernetesGateway",
    "Listener",
    "ReferenceGrant",
    "ReferenceGrantSpec",
    "RouteGroupKind",
    "RouteNamespaces",
    "SecretObjectReference",
]

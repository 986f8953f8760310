"""One descriptor per kind: everything else about a kind follows from it.

`api.parse` recognises the kinds listed here; `crds` generates a CRD for each kind we
own; the operator watches every kind (`kube/kinds.WATCHED`); and the chart's RBAC and
validating webhook are checked against this list (tests/charts). Adding a kind is one
entry here plus its model (and a translation pass that reads it, or a reason in
`translate.NOT_READ`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from .gateway_api import (
    GatewayClass,
    GatewayClassSpec,
    GRPCRoute,
    GRPCRouteSpec,
    HTTPRouteSpec,
    KubernetesGateway,
    KubernetesHTTPRoute,
    ReferenceGrant,
    ReferenceGrantSpec,
    TCPRoute,
    TCPRouteSpec,
    TLSRoute,
    TLSRouteSpec,
)
from .gateway_api import (
    GatewaySpec as GatewayApiGatewaySpec,
)
from .kube import (
    ConfigMap,
    EndpointSlice,
    Namespace,
    Node,
    Pod,
    Secret,
    Service,
    ServiceAccount,
)
from .meta import Resource
from .networking import (
    DestinationRule,
    DestinationRuleSpec,
    Gateway,
    GatewaySpec,
    ServiceEntry,
    ServiceEntrySpec,
    Sidecar,
    SidecarSpec,
    VirtualService,
    VirtualServiceSpec,
    WorkloadEntry,
    WorkloadEntrySpec,
)
from .security import (
    AuthorizationPolicy,
    AuthorizationPolicySpec,
    PeerAuthentication,
    PeerAuthenticationSpec,
    RequestAuthentication,
    RequestAuthenticationSpec,
)
from .telemetry import Telemetry, TelemetrySpec

Column = tuple[str, str, str]
"""An additionalPrinterColumn: (name, type, jsonPath)."""
_AGE: Column = ("Age", "date", ".metadata.creationTimestamp")


@dataclass(frozen=True)
class KindSpec:
    model: type[Resource]
    plural: str
    owned: bool = False
    """Ours: a CRD is generated, the validating webhook checks it, and we write its
    status (`status` says the shape)."""
    spec: type[BaseModel] | None = None
    """The spec model the CRD schema is generated from (owned kinds)."""
    short_names: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    status: Literal["accepted", "gateway-api", "none"] = "none"
    """`accepted`: observedGeneration and an Accepted condition (kube/status.py);
    `gateway-api`: the conditions the Gateway API specifies (translate/gateway_api)."""
    crd_if_absent: bool = False
    """Not ours but read and given status (the Gateway API's kinds): a CRD is generated
    from the model, and the chart installs it only when the cluster has none."""
    watched: bool = True
    """Watched by the operator's kopf handlers. The mesh ConfigMap is not: a watch of
    every ConfigMap in the cluster for one object would cost memory and RBAC; it is
    read by name (kube/mesh_config.py)."""

    @property
    def kind(self) -> str:
        """The kind's name inside Pilotfish (unique; see `Resource.STORE_KIND`)."""
        return self.model.store_kind()

    @property
    def api_kind(self) -> str:
        """The kind as the API server names it (unique only within its group)."""
        return self.model.KIND

    @property
    def group(self) -> str:
        first = self.model.API_VERSIONS[0]
        return first.rsplit("/", 1)[0] if "/" in first else ""

    @property
    def versions(self) -> tuple[str, ...]:
        """Served versions, the stored (and watched) one first."""
        return tuple(v.rsplit("/", 1)[-1] for v in self.model.API_VERSIONS)

    @property
    def namespaced(self) -> bool:
        return not self.model.CLUSTER_SCOPED


_GW: Literal["gateway-api"] = "gateway-api"
_GATEWAY_API: tuple[
    tuple[type[Resource], str, type[BaseModel], tuple[str, ...], Literal["gateway-api", "none"]],
    ...,
] = (
    (GatewayClass, "gatewayclasses", GatewayClassSpec, ("gc",), _GW),
    (KubernetesGateway, "gateways", GatewayApiGatewaySpec, ("gtw",), _GW),
    (KubernetesHTTPRoute, "httproutes", HTTPRouteSpec, (), _GW),
    (GRPCRoute, "grpcroutes", GRPCRouteSpec, (), _GW),
    (TLSRoute, "tlsroutes", TLSRouteSpec, (), _GW),
    (TCPRoute, "tcproutes", TCPRouteSpec, (), _GW),
    (ReferenceGrant, "referencegrants", ReferenceGrantSpec, ("refgrant",), "none"),
)

SPECS: tuple[KindSpec, ...] = (
    KindSpec(
        VirtualService,
        "virtualservices",
        owned=True,
        spec=VirtualServiceSpec,
        short_names=("vs",),
        columns=(
            ("Gateways", "string", ".spec.gateways"),
            ("Hosts", "string", ".spec.hosts"),
            _AGE,
        ),
        status="accepted",
    ),
    KindSpec(
        DestinationRule,
        "destinationrules",
        owned=True,
        spec=DestinationRuleSpec,
        short_names=("dr",),
        columns=(("Host", "string", ".spec.host"), _AGE),
        status="accepted",
    ),
    KindSpec(
        Gateway,
        "gateways",
        owned=True,
        spec=GatewaySpec,
        short_names=("gw",),
        columns=(_AGE,),
        status="accepted",
    ),
    KindSpec(
        PeerAuthentication,
        "peerauthentications",
        owned=True,
        spec=PeerAuthenticationSpec,
        short_names=("pa",),
        columns=(("Mode", "string", ".spec.mtls.mode"), _AGE),
        status="accepted",
    ),
    KindSpec(
        AuthorizationPolicy,
        "authorizationpolicies",
        owned=True,
        spec=AuthorizationPolicySpec,
        short_names=("ap",),
        columns=(("Action", "string", ".spec.action"), _AGE),
        status="accepted",
    ),
    KindSpec(
        RequestAuthentication,
        "requestauthentications",
        owned=True,
        spec=RequestAuthenticationSpec,
        short_names=("ra",),
        columns=(_AGE,),
        status="accepted",
    ),
    KindSpec(
        Telemetry,
        "telemetries",
        owned=True,
        spec=TelemetrySpec,
        short_names=("telemetry",),
        columns=(_AGE,),
        status="accepted",
    ),
    KindSpec(
        ServiceEntry,
        "serviceentries",
        owned=True,
        spec=ServiceEntrySpec,
        short_names=("se",),
        columns=(
            ("Hosts", "string", ".spec.hosts"),
            ("Location", "string", ".spec.location"),
            ("Resolution", "string", ".spec.resolution"),
            _AGE,
        ),
        status="accepted",
    ),
    KindSpec(
        WorkloadEntry,
        "workloadentries",
        owned=True,
        spec=WorkloadEntrySpec,
        short_names=("we",),
        columns=(("Address", "string", ".spec.address"), _AGE),
        status="accepted",
    ),
    KindSpec(
        Sidecar,
        "sidecars",
        owned=True,
        spec=SidecarSpec,
        columns=(_AGE,),
        status="accepted",
    ),
    *(
        KindSpec(model, plural, spec=spec, short_names=short, status=status, crd_if_absent=True)
        for model, plural, spec, short, status in _GATEWAY_API
    ),
    KindSpec(Namespace, "namespaces"),
    KindSpec(Service, "services"),
    KindSpec(Pod, "pods"),
    KindSpec(EndpointSlice, "endpointslices"),
    KindSpec(ServiceAccount, "serviceaccounts"),
    KindSpec(Node, "nodes"),
    KindSpec(ConfigMap, "configmaps", watched=False),
    KindSpec(Secret, "secrets", watched=False),
)
BY_KIND: dict[str, KindSpec] = {s.kind: s for s in SPECS}

UNSUPPORTED: dict[str, tuple[str, ...]] = {
    "networking.istio.io": ("EnvoyFilter", "WorkloadGroup", "ProxyConfig"),
    "extensions.istio.io": ("WasmPlugin", "TrafficExtension"),
}
"""Istio kinds recognised but not implemented yet: `api.parse` says so instead of
"unknown kind". No CRD, RBAC or webhook rule for them (docs/architecture.md)."""
BY_GROUP_KIND: dict[tuple[str, str], KindSpec] = {(s.group, s.api_kind): s for s in SPECS}


def spec_for(api_version: object, kind: object) -> KindSpec | None:
    """The kind an object's apiVersion and kind name; a kind name no other group has is
    found whatever the apiVersion (parse then says which apiVersions it takes)."""
    if not isinstance(kind, str):
        return None
    if isinstance(api_version, str):
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        found = BY_GROUP_KIND.get((group, kind))
        if found is not None:
            return found
    named = [s for s in SPECS if s.api_kind == kind]
    return named[0] if len(named) == 1 else None

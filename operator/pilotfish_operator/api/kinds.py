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
    status: Literal["accepted", "none"] = "none"
    """`accepted`: observedGeneration and an Accepted condition (kube/status.py)."""
    watched: bool = True
    """Watched by the operator's kopf handlers. The mesh ConfigMap is not: a watch of
    every ConfigMap in the cluster for one object would cost memory and RBAC; it is
    read by name (kube/mesh_config.py)."""

    @property
    def kind(self) -> str:
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

"""Services and their endpoints, from EndpointSlices or (local mode) from pods.

In a cluster, Kubernetes' endpoint controller writes EndpointSlices and we read
them. Local mode has no such controller, so a Service without slices gets its
endpoints the way that controller would pick them: pods matching the selector.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pilotfish_xds import ir

from ..api import (
    AuthorizationPolicy,
    EndpointSlice,
    PeerAuthentication,
    Pod,
    RequestAuthentication,
    Service,
    Telemetry,
    mesh_config,
)
from ..injection import GATEWAY_LABEL, decide
from ..store import Store
from .authorization import AuthzPolicies, JwtRules
from .hosts import Names
from .peer_authentication import PeerPolicies
from .protocols import protocol_of
from .telemetry import TelemetryPolicies

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
INBOUND_PORT = 15006
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"  # Istio's; Kubernetes has no sub-zone label


@dataclass(frozen=True)
class Backend:
    """One endpoint of one service port, with what subsets select on."""

    address: str
    port: int
    healthy: bool
    labels: dict[str, str] = field(hash=False)  # compared: subsets select on them
    locality: ir.Locality | None = None
    identity: str = ""
    """The SPIFFE identity of its sidecar when the traffic reaches one (auto mTLS);
    empty for a pod without a sidecar or a port its sidecar is bypassed on."""
    workload: ir.Workload | None = None


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target: int | str
    protocol: str = "http"


@dataclass
class ServiceInfo:
    name: str
    namespace: str
    hostname: str
    ports: list[ServicePort]
    selector: dict[str, str]
    backends: dict[int, list[Backend]]
    """Service port → its endpoints."""
    export_to: tuple[str, ...] = ("*",)
    addresses: tuple[str, ...] = ()
    """The Service's cluster IP, if it has one (not headless); a ServiceEntry's addresses."""
    entry: bool = False
    """From a ServiceEntry: the host is its only name (no short name or aliases)."""
    discovery: ir.Discovery = "eds"
    subject_alt_names: tuple[str, ...] = ()
    """A ServiceEntry's subjectAltNames: identities its mTLS endpoints may present."""


@dataclass
class Workloads:
    """Pods, whether each has a sidecar, and a label index for selectors."""

    pods: dict[tuple[str, str], Pod]
    injected: set[tuple[str, str]]
    by_label: dict[tuple[str, str, str], set[tuple[str, str]]]
    """(namespace, label, value) → pods"""
    localities: dict[str, ir.Locality]
    """node name → its topology labels"""
    peer: dict[tuple[str, str], ir.PeerAuth] = field(default_factory=dict)
    """injected pod → what its sidecar accepts (PeerAuthentication, composed)"""
    authz: dict[tuple[str, str], tuple[ir.AuthzPolicy, ...]] = field(default_factory=dict)
    """injected pod → the AuthorizationPolicies that apply to it"""
    jwt: dict[tuple[str, str], tuple[ir.JwtRule, ...]] = field(default_factory=dict)
    """injected pod → the RequestAuthentication rules that apply to it"""
    warnings: list[str] = field(default_factory=list)
    telemetry: dict[tuple[str, str], ir.Telemetry] = field(default_factory=dict)
    """injected pod → its metrics, traces and access logs (Telemetry API, mesh config)"""
    outbound_policy: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"
    """The mesh config's outboundTrafficPolicy.mode."""

    def locality(self, node: str | None, zone: str | None = None) -> ir.Locality | None:
        """Where a node is; an EndpointSlice's own zone wins over the node's label."""
        known = self.localities.get(node or "")
        if known is None and not zone:
            return None
        base = known or ir.Locality()
        return ir.Locality(base.region, zone or base.zone, base.subzone)

    @classmethod
    def of(
        cls,
        store: Store,
        root_namespace: str = "pilotfish-system",
        cluster_domain: str = "cluster.local",
    ) -> Workloads:
        ns_labels = {n.name: dict(n.metadata.labels) for n in store.of_kind("Namespace")}
        pods = {(p.namespace, p.name): p for p in store.of_kind("Pod") if isinstance(p, Pod)}
        injected = set()
        by_label: dict[tuple[str, str, str], set[tuple[str, str]]] = defaultdict(set)
        for key, p in pods.items():
            labels = p.metadata.labels
            if decide(key[0], ns_labels.get(key[0], {}), dict(labels)).inject:
                injected.add(key)
            for k, v in labels.items():
                by_label[(key[0], k, v)].add(key)
        localities = {
            n.name: ir.Locality(
                n.metadata.labels.get(REGION_LABEL, ""),
                n.metadata.labels.get(ZONE_LABEL, ""),
                n.metadata.labels.get(SUBZONE_LABEL, ""),
            )
            for n in store.of_kind("Node")
        }
        policies = PeerPolicies(
            (p for p in store.of_kind("PeerAuthentication") if isinstance(p, PeerAuthentication)),
            root_namespace,
        )
        peer = {
            key: policies.for_workload(key[0], dict(pods[key].metadata.labels)) for key in injected
        }
        mesh = mesh_config.of(store)
        services = {
            (s.namespace, s.name): s for s in store.of_kind("Service") if isinstance(s, Service)
        }
        authz_policies = AuthzPolicies(
            (a for a in store.of_kind("AuthorizationPolicy") if isinstance(a, AuthorizationPolicy)),
            root_namespace,
            mesh,
            services,
            cluster_domain,
        )
        # Gateway pods enforce their AuthorizationPolicies and RequestAuthentication too.
        enforcing = injected | {
            key for key, p in pods.items() if p.metadata.labels.get(GATEWAY_LABEL) == "gateway"
        }
        authz = {
            key: authz_policies.for_workload(key[0], dict(pods[key].metadata.labels))
            for key in enforcing
        }
        jwt_rules = JwtRules(
            (
                r
                for r in store.of_kind("RequestAuthentication")
                if isinstance(r, RequestAuthentication)
            ),
            root_namespace,
        )
        jwt = {
            key: jwt_rules.for_workload(key[0], dict(pods[key].metadata.labels))
            for key in enforcing
        }
        telemetry_policies = TelemetryPolicies(
            (t for t in store.of_kind("Telemetry") if isinstance(t, Telemetry)),
            root_namespace,
            mesh,
            services,
            cluster_domain,
        )
        telemetry = {
            key: telemetry_policies.for_workload(
                key[0],
                pods[key].metadata.labels,
                f"{pods[key].metadata.labels.get('app', key[1])}.{key[0]}",
            )
            for key in injected
        }
        return cls(
            pods,
            injected,
            by_label,
            localities,
            peer,
            authz,
            jwt,
            [*authz_policies.warnings, *telemetry_policies.warnings],
            telemetry=telemetry,
            outbound_policy=mesh.outbound_traffic_policy.mode,
        )

    def select(self, namespace: str, selector: dict[str, str]) -> list[tuple[str, str]]:
        """Pods of `namespace` matching every label of a non-empty selector, sorted."""
        if not selector:
            return []
        sets = [self.by_label.get((namespace, k, v), set()) for k, v in selector.items()]
        return sorted(set.intersection(*sets))


def _export_to(annotation: str | None) -> tuple[str, ...]:
    """Istio's Service annotation: a comma-separated list of namespaces, '.' or '*'."""
    values = tuple(v.strip() for v in (annotation or "").split(",") if v.strip())
    return values or ("*",)


def target_port(pod: Pod, target: int | str) -> int | None:
    if isinstance(target, int):
        return target
    for container in pod.spec.containers:
        for p in container.ports:
            if p.name == target:
                return p.container_port
    return None


def pod_ready(pod: Pod) -> bool:
    if pod.status is None or not pod.status.pod_ip:
        return False
    if pod.status.phase not in (None, "Running"):
        return False
    return all(c.status == "True" for c in pod.status.conditions if c.type == "Ready")


def _through_sidecar(sp: ServicePort, identity: str) -> bool:
    """Local mode: HTTP reaches an injected pod through its sidecar's inbound listener,
    which picks the app port by Host. A TCP or TLS connection carries nothing to pick
    by except, over mesh mTLS, its SNI: it goes through the sidecar only then, and
    straight to the app's port otherwise (nothing captures it)."""
    return ir.proxying_of(sp.protocol) == "http" or bool(identity)


def identity_of(pod: Pod, trust_domain: str) -> str:
    return f"spiffe://{trust_domain}/ns/{pod.namespace}/sa/{pod.service_account}"


def workload_of(pod: Pod, identity: str = "") -> ir.Workload:
    owners = [(o.kind, o.name) for o in pod.metadata.owner_references if o.controller]
    return workload_from(pod.name, pod.namespace, pod.metadata.labels, owners, identity)


def workload_from(
    pod_name: str,
    namespace: str,
    labels: Mapping[str, str],
    controllers: Sequence[tuple[str, str]],
    identity: str = "",
) -> ir.Workload:
    """Istio's names for a pod in its metrics: the workload is the pod's controller
    (a ReplicaSet's Deployment: the name without its pod-template-hash suffix), else the
    pod; app, version and the canonical service and revision from the labels Istio
    reads, in its order. Shared by the translator and the injector (node metadata)."""
    name = pod_name
    if controllers:
        kind, name = controllers[0]
        template = labels.get("pod-template-hash")
        if kind == "ReplicaSet" and template and name.endswith(f"-{template}"):
            name = name.removesuffix(f"-{template}")
    app = labels.get("app") or labels.get("app.kubernetes.io/name")
    version = labels.get("version") or labels.get("app.kubernetes.io/version")
    return ir.Workload(
        name=name,
        namespace=namespace,
        app=app or "unknown",
        version=version or "unknown",
        canonical_service=labels.get("service.istio.io/canonical-name") or app or name,
        canonical_revision=labels.get("service.istio.io/canonical-revision") or version or "latest",
        principal=identity or "unknown",
    )


def _sidecar_identity(
    pod_key: tuple[str, str] | None,
    sp: ServicePort,
    port: int,
    workloads: Workloads,
    local: bool,
    td: str,
) -> str:
    """The identity to expect when app `port` of this pod is reached through its
    sidecar speaking mTLS; empty (plaintext) when it has no sidecar or its
    PeerAuthentication disables mTLS there (Istio's auto mTLS)."""
    if pod_key is None or pod_key not in workloads.injected:
        return ""
    peer = workloads.peer.get(pod_key)
    if peer is not None and peer.for_port(port) == "DISABLE":
        return ""
    return identity_of(workloads.pods[pod_key], td)


def _from_pods(
    ports: list[ServicePort],
    pods: list[tuple[str, str]],
    workloads: Workloads,
    local: bool,
    td: str,
) -> dict[int, list[Backend]]:
    out: dict[int, list[Backend]] = {p.port: [] for p in ports}
    for key in pods:
        pod = workloads.pods[key]
        if not pod.status.pod_ip:
            continue
        labels = dict(pod.metadata.labels)
        for sp in ports:
            port = target_port(pod, sp.target)
            if port is None:
                continue
            identity = _sidecar_identity(key, sp, port, workloads, local, td)
            if local and key in workloads.injected and _through_sidecar(sp, identity):
                port = INBOUND_PORT  # local mode: peers reach the app through its sidecar
            where = workloads.locality(pod.spec.node_name)
            out[sp.port].append(
                Backend(
                    pod.status.pod_ip,
                    port,
                    pod_ready(pod),
                    labels,
                    where,
                    identity,
                    workload_of(pod, identity),
                )
            )
    return out


def _from_slices(
    slices: list[EndpointSlice],
    ports: list[ServicePort],
    workloads: Workloads,
    local: bool,
    td: str,
) -> dict[int, list[Backend]]:
    out: dict[int, list[Backend]] = {p.port: [] for p in ports}
    for sl in slices:
        for sp in ports:
            slice_port = next((p.port for p in sl.ports if (p.name or "") == sp.name), None)
            if slice_port is None:
                continue
            for ep in sl.endpoints:
                # Kubernetes clears `ready` on terminating endpoints: they are kept but
                # unhealthy, so Envoy sends them nothing new while others can serve.
                healthy = ep.conditions is None or ep.conditions.ready is not False
                labels: dict[str, str] = {}
                pod_key = None
                pod = None
                ref = ep.target_ref
                if ref is not None and ref.kind == "Pod" and ref.name:
                    pod_key = (ref.namespace or sl.namespace, ref.name)
                    pod = workloads.pods.get(pod_key)
                    labels = dict(pod.metadata.labels) if pod else {}
                port = slice_port
                identity = _sidecar_identity(pod_key, sp, port, workloads, local, td)
                if local and pod_key in workloads.injected and _through_sidecar(sp, identity):
                    port = INBOUND_PORT
                where = workloads.locality(ep.node_name, ep.zone)
                workload = workload_of(pod, identity) if pod is not None else None
                for address in ep.addresses:
                    out[sp.port].append(
                        Backend(address, port, healthy, labels, where, identity, workload)
                    )
    return out


def slices_by_service(store: Store) -> dict[tuple[str, str], list[EndpointSlice]]:
    out: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
    for sl in store.of_kind("EndpointSlice"):
        assert isinstance(sl, EndpointSlice)
        owner = sl.metadata.labels.get(SERVICE_NAME_LABEL)
        if owner:
            out[(sl.namespace, owner)].append(sl)
    return out


def involved_pods(
    svc: Service, slices: list[EndpointSlice], workloads: Workloads
) -> list[tuple[str, str]]:
    """The pods a service's endpoints depend on (labels, readiness, injection)."""
    if not slices:
        return workloads.select(svc.namespace, dict(svc.spec.selector or {}))
    out = set()
    for sl in slices:
        for ep in sl.endpoints:
            ref = ep.target_ref
            if ref is not None and ref.kind == "Pod" and ref.name:
                key = (ref.namespace or sl.namespace, ref.name)
                if key in workloads.pods:
                    out.add(key)
    return sorted(out)


def service_info(
    svc: Service,
    slices: list[EndpointSlice],
    pods: list[tuple[str, str]],
    names: Names,
    workloads: Workloads,
    local: bool,
    trust_domain: str = "cluster.local",
) -> ServiceInfo:
    ports = [
        ServicePort(
            p.name or "",
            p.port,
            p.target_port if p.target_port is not None else p.port,
            protocol_of(p.name, p.app_protocol),
        )
        for p in svc.spec.ports
        if (p.protocol or "TCP") == "TCP"
    ]
    backends = (
        _from_slices(slices, ports, workloads, local, trust_domain)
        if slices
        else _from_pods(ports, pods, workloads, local, trust_domain)
    )
    return ServiceInfo(
        name=svc.name,
        namespace=svc.namespace,
        hostname=names.service(svc.name, svc.namespace),
        ports=ports,
        selector=dict(svc.spec.selector or {}),
        backends=backends,
        export_to=_export_to(svc.metadata.annotations.get(EXPORT_TO_ANNOTATION)),
        addresses=_cluster_ips(svc),
    )


def _cluster_ips(svc: Service) -> tuple[str, ...]:
    ip = svc.spec.cluster_ip
    return (ip,) if ip and ip != "None" else ()  # "None": a headless Service

"""ServiceEntry (and WorkloadEntry) → ServiceInfo: each host of an entry becomes a
service like a Kubernetes one, so VirtualServices, DestinationRules, exportTo and the
per-proxy view apply to it unchanged. What differs is carried on the ServiceInfo: the
host is its only name, and how the sidecar finds the endpoints (Istio's resolution):

- NONE: no endpoints; the connection goes where the client sent it (ORIGINAL_DST).
- STATIC: the entry's `endpoints`, or the pods and WorkloadEntries its
  `workloadSelector` selects (same namespace), served over EDS.
- DNS: STRICT_DNS over the endpoints' addresses, else over the host itself.
- DNS_ROUND_ROBIN: LOGICAL_DNS, the same way (one address at a time).

MESH_EXTERNAL endpoints never get mesh mTLS on their own (plaintext unless a
DestinationRule says TLS); pods selected by a MESH_INTERNAL entry do when they have a
sidecar, and a WorkloadEntry or endpoint labelled `security.istio.io/tlsMode: istio`
(a VM with a sidecar) is reached over mTLS as its serviceAccount's identity.
"""

from __future__ import annotations

from dataclasses import replace

from pilotfish_xds import ir

from ..api import ServiceEntry, WorkloadEntry
from ..api.networking.service_entry import ServiceEntryPort
from ..api.networking.workload_entry import WorkloadEntrySpec
from ..store import Store
from .hosts import Names
from .precedence import age
from .protocols import protocol_of
from .services import Backend, ServiceInfo, ServicePort, Workloads, _from_pods

TLS_MODE_LABEL = "security.istio.io/tlsMode"
_DISCOVERY: dict[str, ir.Discovery] = {
    "NONE": "original_dst",
    "STATIC": "eds",
    "DNS": "strict_dns",
    "DNS_ROUND_ROBIN": "logical_dns",
}


def entries(store: Store) -> list[ServiceEntry]:
    """The store's ServiceEntries, oldest first (the first to claim a host keeps it)."""
    return sorted(
        (e for e in store.of_kind("ServiceEntry") if isinstance(e, ServiceEntry)), key=age
    )


def exact_hosts(store: Store) -> frozenset[str]:
    """Hosts named by ServiceEntries: references to them are taken as they are."""
    return frozenset(h for e in entries(store) for h in e.spec.hosts)


def _port(p: ServiceEntryPort) -> ServicePort:
    protocol = protocol_of(None, p.protocol) if p.protocol else protocol_of(p.name, None)
    return ServicePort(p.name, p.number, p.target_port or p.number, protocol)


def _locality(value: str | None) -> ir.Locality | None:
    if not value:
        return None
    parts = [*value.split("/"), "", ""]
    return ir.Locality(parts[0], parts[1], parts[2])


def _backends(
    ep: WorkloadEntrySpec, ports: list[ServicePort], namespace: str, trust_domain: str
) -> dict[int, list[Backend]]:
    """One endpoint (an entry's `endpoints` item or a WorkloadEntry) on every port: the
    port it names for the service port, else the target port."""
    identity = ""
    if ep.labels.get(TLS_MODE_LABEL) == "istio":
        account = ep.service_account or "default"
        identity = f"spiffe://{trust_domain}/ns/{namespace}/sa/{account}"
    out: dict[int, list[Backend]] = {}
    for sp in ports:
        target = ep.ports.get(sp.name, int(sp.target))
        out[sp.port] = [
            Backend(ep.address, target, True, dict(ep.labels), _locality(ep.locality), identity)
        ]
    return out


def _merge(into: dict[int, list[Backend]], more: dict[int, list[Backend]]) -> None:
    for port, backends in more.items():
        into.setdefault(port, []).extend(backends)


def infos(
    store: Store,
    workloads: Workloads,
    names: Names,
    taken: set[str],
    local: bool,
    trust_domain: str,
    warnings: list[str],
) -> list[ServiceInfo]:
    """A ServiceInfo per host of every ServiceEntry. A host already served (by a Service
    or an older entry) is left to it, with a warning."""
    workload_entries = sorted(
        (w for w in store.of_kind("WorkloadEntry") if isinstance(w, WorkloadEntry)),
        key=lambda w: w.key,
    )
    out: list[ServiceInfo] = []
    for se in entries(store):
        spec = se.spec
        if spec.mode == "DYNAMIC_DNS":
            warnings.append(
                f"ServiceEntry {se.namespace}/{se.name}: resolution DYNAMIC_DNS is accepted, "
                "not applied yet; left out"
            )
            continue
        ports = [_port(p) for p in spec.ports if (p.protocol or "").lower() != "udp"]
        mode = spec.mode
        backends: dict[int, list[Backend]] = {p.port: [] for p in ports}
        selector = dict(spec.workload_selector.labels) if spec.workload_selector else {}
        if spec.workload_selector is not None:
            pods = workloads.select(se.namespace, selector) if selector else []
            found = _from_pods(ports, pods, workloads, local, trust_domain)
            if not spec.internal:  # MESH_EXTERNAL: never mesh mTLS by itself
                found = {p: [replace(b, identity="") for b in bs] for p, bs in found.items()}
            _merge(backends, found)
            for we in workload_entries:
                labels = we.spec.labels
                if we.namespace == se.namespace and all(
                    labels.get(k) == v for k, v in selector.items()
                ):
                    _merge(backends, _backends(we.spec, ports, se.namespace, trust_domain))
        for ep in spec.endpoints:
            if ep.address.startswith("unix://") or not ep.address:
                warnings.append(
                    f"ServiceEntry {se.namespace}/{se.name}: endpoint {ep.address or ep.network!r}"
                    " is not reachable from a sidecar (unix socket or another network); left out"
                )
                continue
            _merge(backends, _backends(ep, ports, se.namespace, trust_domain))
        for host in spec.hosts:
            hostname = names.fqdn(host, se.namespace)
            if hostname in taken:
                warnings.append(
                    f"ServiceEntry {se.namespace}/{se.name}: host {host} is already defined "
                    "by an older ServiceEntry or a Service; ignored for that host"
                )
                continue
            taken.add(hostname)
            own = backends
            if mode in ("DNS", "DNS_ROUND_ROBIN") and not spec.endpoints:
                own = {sp.port: [Backend(host, int(sp.target), True, {})] for sp in ports}
            out.append(
                ServiceInfo(
                    name=host,
                    namespace=se.namespace,
                    hostname=hostname,
                    ports=ports,
                    selector=selector,
                    backends=own,
                    export_to=tuple(spec.export_to) or ("*",),
                    addresses=tuple(spec.addresses),
                    entry=True,
                    discovery=_DISCOVERY[mode],
                    subject_alt_names=tuple(spec.subject_alt_names),
                )
            )
    return out

"""Validated API objects → mesh IR. The single entry point is `translate`.

Local mode and the operator both call this with the store they fill, so there is
one translation path whatever the objects' source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from pilotfish_xds import ir

from ..api import Destination, DestinationRule, Pod, VirtualService
from ..store import Store
from . import policies, routes
from .hosts import Names
from .services import ServiceInfo, Workloads, services, target_port

log = logging.getLogger(__name__)
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Options:
    cluster_domain: str = "cluster.local"
    local: bool = True
    """Local mode: no iptables, so injected pods are reached at podIP:15006."""


@dataclass
class Translation:
    mesh: ir.Mesh
    warnings: list[str] = field(default_factory=list)


def _export_to(values: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    return tuple(values) if values else ("*",)


def _vs_by_host(store: Store, names: Names, warnings: list[str]) -> dict[str, list[VirtualService]]:
    """VirtualServices per host, oldest first (creation time, then namespace/name): a
    proxy uses the first one exported to its namespace."""

    def age(vs: VirtualService) -> tuple[datetime, str, str]:
        ts = vs.metadata.creation_timestamp or _EPOCH
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC), vs.namespace, vs.name)

    out: dict[str, list[VirtualService]] = {}
    all_vs = [v for v in store.of_kind("VirtualService") if isinstance(v, VirtualService)]
    for vs in sorted(all_vs, key=age):
        if vs.spec.gateways and "mesh" not in vs.spec.gateways:
            continue  # bound to gateways only
        for host in vs.spec.hosts:
            earlier = out.setdefault(names.fqdn(host, vs.namespace), [])
            shadow = next((e for e in earlier if _export_to(e.spec.export_to) == ("*",)), None)
            if shadow is not None:
                warnings.append(
                    f"VirtualService {vs.namespace}/{vs.name}: host {host} is already routed "
                    f"for every namespace by VirtualService {shadow.namespace}/{shadow.name}; "
                    "ignored for that host"
                )
                continue
            earlier.append(vs)
    return out


def translate(store: Store, options: Options = Options()) -> Translation:
    names = Names(options.cluster_domain)
    warnings: list[str] = []
    workloads = Workloads.of(store)
    svcs = services(store, names, workloads, options.local)
    by_host = {s.hostname: s for s in svcs}
    rules = policies.rules_by_host(store, names)
    vs_by_host = _vs_by_host(store, names, warnings)

    def cluster_for(
        namespace: str, dest: Destination, port: int
    ) -> tuple[str, tuple[ir.HashPolicy, ...]]:
        host = names.fqdn(dest.host, namespace)
        svc = by_host.get(host)
        if dest.port is not None and dest.port.number is not None:
            port = dest.port.number
        elif svc is not None and len(svc.ports) == 1:
            port = svc.ports[0].port
        subset = dest.subset or ""
        lb = policies.load_balancer_settings(rules.get(host), port, subset)
        return ir.outbound_cluster_name(host, port, subset), policies.hash_policy(lb)

    clusters: list[ir.Cluster] = []
    vhosts: list[ir.VirtualHost] = []
    for svc in svcs:
        dr = rules.get(svc.hostname)
        for sp in svc.ports:
            clusters += _clusters(svc, sp.port, dr)
            default = ir.outbound_cluster_name(svc.hostname, sp.port)
            lb = policies.load_balancer_settings(dr, sp.port, "")
            tables = tuple(
                ir.RouteTable(
                    source=f"{vs.namespace}/{vs.name}",
                    namespace=vs.namespace,
                    routes=routes.virtual_service_routes(
                        vs, sp.port, partial(cluster_for, vs.namespace)
                    ),
                    export_to=_export_to(vs.spec.export_to),
                )
                for vs in vs_by_host.get(svc.hostname, ())
            )
            vhosts.append(
                ir.VirtualHost(
                    hostname=svc.hostname,
                    port=sp.port,
                    namespace=svc.namespace,
                    aliases=names.aliases(svc.name, svc.namespace),
                    short_name=svc.name,
                    routes=(routes.default_route(default, policies.hash_policy(lb)),),
                    tables=tables,
                    export_to=svc.export_to,
                )
            )
    for host in sorted(vs_by_host.keys() - by_host.keys()):
        for vs in vs_by_host[host]:
            warnings.append(
                f"VirtualService {vs.namespace}/{vs.name}: host {host} is not a known service; "
                "ignored"
            )
    proxies = _proxies(workloads, svcs, names)
    for w in warnings:
        log.warning("%s", w)
    return Translation(ir.Mesh(tuple(vhosts), tuple(clusters), proxies), warnings)


def _clusters(svc: ServiceInfo, port: int, rule: DestinationRule | None) -> list[ir.Cluster]:
    backends = svc.backends.get(port, [])

    def cluster(subset: str, selector: dict[str, str]) -> ir.Cluster:
        chosen = [b for b in backends if all(b.labels.get(k) == v for k, v in selector.items())]
        return ir.Cluster(
            hostname=svc.hostname,
            port=port,
            subset=subset,
            namespace=svc.namespace,
            endpoints=tuple(ir.Endpoint(b.address, b.port, b.healthy) for b in chosen),
            lb=policies.load_balancer(policies.load_balancer_settings(rule, port, subset)),
            export_to=svc.export_to,
        )

    out = [cluster("", {})]
    if rule is not None:
        out += [cluster(s.name, dict(s.labels)) for s in rule.spec.subsets]
    return out


def _proxies(workloads: Workloads, svcs: list[ServiceInfo], names: Names) -> tuple[ir.Proxy, ...]:
    out = []
    for key in sorted(workloads.injected):
        pod: Pod = workloads.pods[key]
        if pod.status is None or not pod.status.pod_ip:
            continue  # not scheduled yet: no address to bind
        labels = dict(pod.metadata.labels)
        inbound = []
        for svc in svcs:
            if svc.namespace != pod.namespace or not svc.selector:
                continue
            if any(labels.get(k) != v for k, v in svc.selector.items()):
                continue
            for sp in svc.ports:
                port = target_port(pod, sp.target)
                if port is not None:
                    inbound.append(
                        ir.Inbound(
                            svc.hostname,
                            names.aliases(svc.name, svc.namespace),
                            svc.name,
                            sp.port,
                            port,
                        )
                    )
        app_ports = tuple(p.container_port for c in pod.spec.containers for p in c.ports)
        out.append(
            ir.Proxy(
                id=proxy_id(pod.namespace, pod.name),
                name=pod.name,
                namespace=pod.namespace,
                ip=pod.status.pod_ip,
                labels=ir.labels_of(labels),
                app_ports=app_ports,
                inbound=tuple(inbound),
            )
        )
    return tuple(out)


def proxy_id(namespace: str, pod: str) -> str:
    """The Envoy node id of a pod's sidecar."""
    return f"{pod}.{namespace}"

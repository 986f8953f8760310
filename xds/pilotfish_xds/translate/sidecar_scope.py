"""A Sidecar's egress scope: which services one proxy imports (Istio's `egress[].hosts`).

`imported` is the one test, applied where each proxy's view is decided (`view.py`: its
virtual hosts by name and by port, its TCP/TLS ports, its clusters), so a narrowed proxy
gets fewer listeners, routes, clusters and endpoints. A proxy without a Sidecar
(`Proxy.egress_imports` None) sees everything exported to it, at no cost. As Istio, the
destinations that the routes of an imported host name stay reachable (`kept_clusters`):
a VirtualService sending `reviews` to `reviews-v2` needs that cluster. Automatic
scoping can narrow `egress_imports` further, or compose with `imported`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import ir


def imported(proxy: ir.Proxy, hostname: str, namespace: str, port: int) -> bool:
    imports = proxy.egress_imports
    return imports is None or any(i.imports(hostname, namespace, port) for i in imports)


def kept_clusters(virtual_hosts: Iterable[ir.VirtualHost], proxy: ir.Proxy) -> frozenset[str]:
    """Clusters a scoped proxy needs beyond its imports: what the routes of its imported
    virtual hosts send to, and the collectors and providers its own config names."""
    ns = proxy.namespace
    names: set[str] = set()
    for vh in virtual_hosts:
        for route in vh.routes_for(ns):
            if isinstance(route.action, ir.Forward):
                names.update(c.cluster for c in route.action.clusters)
                names.update(m.cluster for m in route.action.traffic.mirrors)
        for l4 in vh.l4_routes_for(ns):
            names.update(c.cluster for c in l4.clusters)
    for side in (proxy.telemetry.client, proxy.telemetry.server):
        if side.tracing is not None and side.tracing.provider is not None:
            names.add(side.tracing.provider.collector.cluster)
        names.update(log.otel.cluster for log in side.access_logs if log.otel is not None)
    names.update(p.provider.cluster for p in proxy.authz if p.provider is not None)
    return frozenset(names)

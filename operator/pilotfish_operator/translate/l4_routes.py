"""VirtualService `tcp` and `tls` routes → IR L4 routes for one service port.

A TCP port takes the `tcp` routes, a TLS port (tls, https) the `tls` routes; an HTTP
port takes neither, as in Istio. Each match block is one L4 route (blocks are ORed);
a block naming another port, or gateways without `mesh`, is left out. A `tcp` route
without match blocks matches every connection to the port.
"""

from __future__ import annotations

from pilotfish_xds import ir

from ..api import RouteDestination, VirtualService
from .routes import ClusterFor, gateway_name


def _clusters(
    dests: tuple[RouteDestination, ...], port: int, cluster_for: ClusterFor
) -> tuple[ir.WeightedCluster, ...]:
    single = len(dests) == 1
    out = [
        ir.WeightedCluster(
            cluster_for(rd.destination, port)[0], 100 if single and not rd.weight else rd.weight
        )
        for rd in dests
    ]
    return tuple(c for c in out if c.weight > 0) or tuple(out)


def _source(labels: dict[str, str], namespace: str | None) -> ir.SourceSelector | None:
    if not labels and not namespace:
        return None
    return ir.SourceSelector(ir.labels_of(labels), namespace)


def l4_routes(
    vs: VirtualService,
    port: int,
    proxying: ir.Proxying,
    cluster_for: ClusterFor,
    gateway: str = "mesh",
) -> tuple[ir.L4Route, ...]:
    """`gateway`: whose port this is (`ns/name`, or `mesh`: the sidecars')."""
    out: list[ir.L4Route] = []
    prefix = f"{vs.namespace}/{vs.name}"

    def _applies(port: int, at_port: int | None, gateways: tuple[str, ...]) -> bool:
        named = {gateway_name(g, vs.namespace) for g in gateways}
        return (at_port is None or at_port == port) and (not named or gateway in named)

    if proxying == "tcp":
        for i, tcp in enumerate(vs.spec.tcp):
            clusters = _clusters(tcp.route, port, cluster_for)
            if not tcp.match:
                out.append(ir.L4Route(f"{prefix}/tcp/{i}", ir.L4Match(), clusters))
            for j, m in enumerate(tcp.match):
                if _applies(port, m.port, m.gateways):
                    match = ir.L4Match(
                        destination_subnets=m.destination_subnets,
                        source=_source(dict(m.source_labels), m.source_namespace),
                    )
                    out.append(ir.L4Route(f"{prefix}/tcp/{i}/match/{j}", match, clusters))
    elif proxying == "tls":
        for i, tls in enumerate(vs.spec.tls):
            clusters = _clusters(tls.route, port, cluster_for)
            for j, t in enumerate(tls.match):
                if _applies(port, t.port, t.gateways):
                    match = ir.L4Match(
                        destination_subnets=t.destination_subnets,
                        sni_hosts=t.sni_hosts,
                        source=_source(dict(t.source_labels), t.source_namespace),
                    )
                    out.append(ir.L4Route(f"{prefix}/tls/{i}/match/{j}", match, clusters))
    return tuple(out)


def default_l4_route(cluster: str) -> ir.L4Route:
    """A TCP or TLS port without a VirtualService: every connection to its cluster."""
    return ir.L4Route("default", ir.L4Match(), (ir.WeightedCluster(cluster, 100),))

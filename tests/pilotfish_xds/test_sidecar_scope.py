"""A Sidecar's egress scope on the xDS side: which hosts an import matches, and which
clusters a scoped proxy keeps beyond its imports (route destinations, its own
collectors and providers)."""

from __future__ import annotations

import pytest

from pilotfish_xds import ir
from pilotfish_xds.translate import sidecar_scope, view

SHOP = "reviews.shop.svc.cluster.local"


@pytest.mark.parametrize(
    ("entry", "hostname", "namespace", "port", "expected"),
    [
        (ir.EgressImport("*", "*"), SHOP, "shop", 9080, True),
        (ir.EgressImport("shop", "*"), SHOP, "shop", 9080, True),
        (ir.EgressImport("billing", "*"), SHOP, "shop", 9080, False),
        (ir.EgressImport("*", SHOP), SHOP, "shop", 9080, True),
        (ir.EgressImport("*", "ratings.shop.svc.cluster.local"), SHOP, "shop", 9080, False),
        (ir.EgressImport("*", "*.example.com"), "api.example.com", "shop", 443, True),
        (ir.EgressImport("*", "*.example.com"), "example.com", "shop", 443, False),
        (ir.EgressImport("*", "*", 9080), SHOP, "shop", 9080, True),
        (ir.EgressImport("*", "*", 9080), SHOP, "shop", 9090, False),
    ],
)
def test_import_matches(
    entry: ir.EgressImport, hostname: str, namespace: str, port: int, expected: bool
) -> None:
    assert entry.imports(hostname, namespace, port) is expected


def _vhost(host: str, namespace: str, to: tuple[str, ...]) -> ir.VirtualHost:
    route = ir.Route(
        name="default",
        match=ir.RouteMatch(),
        action=ir.Forward(tuple(ir.WeightedCluster(c, 100 // len(to)) for c in to)),
    )
    return ir.VirtualHost(host, 80, namespace, (), None, (route,))


def _cluster(host: str, namespace: str) -> ir.Cluster:
    return ir.Cluster(host, 80, "", namespace, ())


def test_scoped_proxy_keeps_route_destinations_and_its_collector() -> None:
    a, b, c, zipkin = (f"{n}.shop.svc.cluster.local" for n in ("a", "b", "c", "zipkin"))
    mesh = ir.Mesh(
        virtual_hosts=(
            _vhost(a, "shop", (ir.outbound_cluster_name(a, 80), ir.outbound_cluster_name(b, 80))),
            _vhost(b, "shop", (ir.outbound_cluster_name(b, 80),)),
            _vhost(c, "shop", (ir.outbound_cluster_name(c, 80),)),
        ),
        clusters=tuple(_cluster(h, "shop") for h in (a, b, c, zipkin)),
    )
    collector = ir.Collector(ir.outbound_cluster_name(zipkin, 80), f"{zipkin}:80")
    tracing = ir.Tracing(ir.TracingProvider("zipkin", collector))
    proxy = ir.Proxy(
        id="p.shop",
        name="p",
        namespace="shop",
        ip="127.0.0.1",
        telemetry=ir.Telemetry(client=ir.SideTelemetry(tracing=tracing)),
        egress_imports=(ir.EgressImport("shop", a),),
    )
    hosts = [vh.hostname for vh, _, _ in view.outbound_virtual_hosts(mesh, proxy)]
    assert hosts == [a]  # b is reachable only as a's destination, not by its own name
    clusters = {cl.hostname for cl in view.visible_clusters(mesh, proxy)}
    assert clusters == {a, b, zipkin}
    # Without a Sidecar: everything, and the scope test says so for any host.
    unscoped = ir.Proxy(id="q.shop", name="q", namespace="shop", ip="127.0.0.2")
    assert len(view.visible_clusters(mesh, unscoped)) == 4
    assert sidecar_scope.imported(unscoped, c, "shop", 80)
    # `~/*` (nothing imported): not even the routes' destinations.
    nothing = ir.Proxy(id="r.shop", name="r", namespace="shop", ip="127.0.0.3", egress_imports=())
    assert view.outbound_virtual_hosts(mesh, nothing) == []
    assert view.visible_clusters(mesh, nothing) == []

"""IR → Envoy resources for one proxy: the single entry point is `translate`.

Every resource is encoded through the shared `EncodeCache`, keyed by the IR values
it was built from, so an edit re-encodes only what it changed. The outbound route
configuration is assembled from per-virtual-host bytes (protobuf repeated fields
concatenate), so one VirtualService edit re-encodes one virtual host, not ten
thousand.
"""

from __future__ import annotations

from functools import partial

from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

from .. import ir, types, wire
from ..codec import EncodeCache, Encoded
from ..snapshot import Snapshot
from . import clusters, listeners, routes, view

_VIRTUAL_HOSTS_FIELD = 2  # RouteConfiguration.virtual_hosts


def _route_configuration(name: str, parts: list[bytes]) -> bytes:
    head = wire.encode(RouteConfiguration(name=name))
    return head + b"".join(wire.length_delimited(_VIRTUAL_HOSTS_FIELD, p) for p in parts)


def translate(mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache) -> Snapshot:
    if proxy.capture == "iptables":
        return _translate_iptables(mesh, proxy, cache)
    out: dict[str, list[Encoded]] = {t: [] for t in types.PUSH_ORDER if t != types.SECRET}
    eds_names: set[str] = set()

    # Outbound: one route configuration for every service port the proxy may call.
    local = proxy.capture == "local"
    parts = []
    for vh, domains, rs in view.outbound_virtual_hosts(mesh, proxy):
        parts.append(
            cache.get_or_build(
                ("vhost", vh.name, domains, rs, local),
                partial(routes.virtual_host, vh.name, domains, rs, local),
                vh.name,
            ).body
        )
    out[types.ROUTE].append(
        Encoded(listeners.OUTBOUND_ROUTE, _route_configuration(listeners.OUTBOUND_ROUTE, parts))
    )
    _outbound_clusters(mesh, proxy, cache, out, eds_names)

    # Inbound: the app's ports, reached by Host from peers' sidecars.
    inbound = view.inbound_virtual_hosts(proxy)
    ports = sorted({p for _, _, p in inbound} | set(proxy.app_ports))
    _inbound_clusters(proxy, ports, cache, out)
    out[types.LISTENER].append(
        cache.get_or_build(
            ("lds-in", proxy.ip, tuple(inbound), proxy.app_ports),
            partial(_inbound_listener, proxy, inbound),
            "inbound",
        )
    )
    out[types.LISTENER].append(
        cache.get_or_build(
            ("lds-out", proxy.ip), lambda: listeners.outbound_listener(proxy.ip), "outbound"
        )
    )
    references = {
        types.ENDPOINT: frozenset(eds_names),
        types.ROUTE: frozenset({listeners.OUTBOUND_ROUTE}),
    }
    return Snapshot(out, references)


def _outbound_clusters(
    mesh: ir.Mesh,
    proxy: ir.Proxy,
    cache: EncodeCache,
    out: dict[str, list[Encoded]],
    eds_names: set[str],
) -> None:
    local = proxy.capture == "local"
    for c in view.visible_clusters(mesh, proxy):
        out[types.CLUSTER].append(
            cache.get_or_build(
                # The cluster's hash is cached; endpoint churn re-encodes it, cheaply.
                ("cds", c, local),
                partial(clusters.outbound_cluster, c, local),
                c.name,
            )
        )
        if c.lb.policy != "PASSTHROUGH":
            eds_names.add(c.name)
            out[types.ENDPOINT].append(
                cache.get_or_build(
                    ("eds", c),
                    partial(clusters.load_assignment, c.name, c.endpoints),
                    c.name,
                )
            )


def _inbound_clusters(
    proxy: ir.Proxy, ports: list[int], cache: EncodeCache, out: dict[str, list[Encoded]]
) -> None:
    """The app's ports. The sidecar sends to the pod's own address, and its uid is
    exempt from capture, so these connections are not redirected again."""
    for port in ports:
        name = ir.inbound_cluster_name(port)
        out[types.CLUSTER].append(
            cache.get_or_build(
                ("cds-in", proxy.ip, port),
                partial(clusters.inbound_cluster, proxy.ip, port),
                name,
            )
        )


def _translate_iptables(mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache) -> Snapshot:
    """The sidecar of a pod whose traffic iptables redirects (see `listeners`)."""
    out: dict[str, list[Encoded]] = {t: [] for t in types.PUSH_ORDER if t != types.SECRET}
    eds_names: set[str] = set()

    # Outbound: per service port, a listener that never binds and its route configuration.
    allow_any = cache.get_or_build(("vhost-any",), listeners.allow_any, "allow_any").body
    route_names = set()
    for port, hosts in view.outbound_by_port(mesh, proxy).items():
        parts = [
            cache.get_or_build(
                ("vhost", vh.name, domains, rs, False),
                partial(routes.virtual_host, vh.name, domains, rs),
                vh.name,
            ).body
            for vh, domains, rs in hosts
        ]
        name = listeners.port_route_name(port)
        route_names.add(name)
        out[types.ROUTE].append(Encoded(name, _route_configuration(name, [*parts, allow_any])))
        out[types.LISTENER].append(
            cache.get_or_build(
                ("lds-port", port),
                partial(listeners.port_listener, port),
                listeners.port_listener_name(port),
            )
        )
    out[types.LISTENER].append(
        cache.get_or_build(
            ("lds-vout",), listeners.virtual_outbound_listener, listeners.VIRTUAL_OUTBOUND
        )
    )
    _outbound_clusters(mesh, proxy, cache, out, eds_names)
    for name in (listeners.PASSTHROUGH, listeners.INBOUND_PASSTHROUGH):
        out[types.CLUSTER].append(
            cache.get_or_build(("cds-pass",), partial(listeners.passthrough_cluster, name), name)
        )

    # Inbound: the original destination port picks the app port; the Host does not matter.
    ports = sorted({i.target_port for i in proxy.inbound} | set(proxy.app_ports))
    _inbound_clusters(proxy, ports, cache, out)
    out[types.LISTENER].append(
        cache.get_or_build(
            ("lds-vin", tuple(ports)),
            partial(_virtual_inbound, ports),
            listeners.VIRTUAL_INBOUND,
        )
    )
    references = {types.ENDPOINT: frozenset(eds_names), types.ROUTE: frozenset(route_names)}
    return Snapshot(out, references)


def _virtual_inbound(ports: list[int]) -> Listener:
    chains = [(p, routes.virtual_host(f"inbound|http|{p}", ("*",), (_to_app(p),))) for p in ports]
    return listeners.virtual_inbound_listener(chains)


def _inbound_listener(proxy: ir.Proxy, inbound: list[tuple[str, view.Domains, int]]) -> Listener:
    # Mesh peers say which service port they called (listeners.INBOUND_HEADER); a
    # request without it is routed by Host, and anything else (a peer calling the pod
    # by IP) lands on the first app port.
    tagged = tuple(
        dict.fromkeys(
            _to_app(i.target_port, f"{i.hostname}:{i.service_port}") for i in proxy.inbound
        )
    )
    vhosts = [
        routes.virtual_host(name, domains, (*tagged, _to_app(port)))
        for name, domains, port in inbound
    ]
    if proxy.app_ports:
        vhosts.append(
            routes.virtual_host("inbound|*", ("*",), (*tagged, _to_app(proxy.app_ports[0])))
        )
    return listeners.inbound_listener(proxy.ip, vhosts)


def _to_app(port: int, tag: str | None = None) -> ir.Route:
    cluster = ir.inbound_cluster_name(port)
    match = ir.RouteMatch()
    if tag is not None:
        match = ir.RouteMatch(
            headers=(ir.HeaderMatch(listeners.INBOUND_HEADER, ir.StringMatch("exact", tag)),)
        )
    return ir.Route(
        name=f"{cluster}{tag or ''}",
        match=match,
        action=ir.Forward((ir.WeightedCluster(cluster, 100),)),
    )

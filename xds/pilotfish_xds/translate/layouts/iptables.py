"""In a cluster: iptables redirects the pod's traffic and the original destination decides.

`virtualOutbound` (15001) hands each outbound connection to the listener of its
destination port (`0.0.0.0_<port>`, which never binds and routes by Host or service
address through RDS `<port>`); what no listener takes passes through untouched.
`virtualInbound` (15006) picks the filter chain of the app port the peer called; ports
no service declares go straight to the app as TCP, and so do ports only TCP or TLS
services declare. TCP and TLS service ports get chains of their own on the port
listener, matched by the service's virtual IP and SNI (`l4`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterDiscoveryType,
    ClusterLbPolicy,
)
from envoy_data_plane.envoy.config.core.v3 import TrafficDirection
from envoy_data_plane.envoy.config.listener.v3 import (
    Filter,
    FilterChain,
    FilterChainMatch,
    Listener,
    ListenerFilter,
)
from envoy_data_plane.envoy.config.route.v3 import (
    RouteConfiguration,
)
from envoy_data_plane.envoy.extensions.filters.listener.original_dst.v3 import OriginalDst
from envoy_data_plane.google.protobuf import Any

from ... import ir, types
from ...codec import EncodeCache
from ...ports import INBOUND_PORT, OUTBOUND_PORT
from ...snapshot import Part, Snapshot
from .. import (
    authz,
    ext_authz,
    jwt,
    l4,
    mtls,
    observe,
    outbound,
    outbound_policy,
    routes,
    scoping,
    sidecar_ingress,
    telemetry,
    view,
)
from ..clusters import socket_address
from ..hcm import http_connection_manager
from ..listeners import (
    ANY_ADDRESS,
    INBOUND_PASSTHROUGH,
    PASSTHROUGH,
    VIRTUAL_INBOUND,
    VIRTUAL_OUTBOUND,
    port_listener_name,
    port_route_name,
    tcp_proxy,
)
from ..resources import (
    Resources,
    inbound_clusters,
    jwks_clusters,
    outbound_clusters,
    route_configuration,
    to_app,
)

_CLIENT = ir.Telemetry().client
_SERVER = ir.Telemetry().server


def _outbound(
    cache: EncodeCache, mesh_ref: outbound.SameMesh, viewer: ir.Proxy, mesh_tls: bool
) -> Part:
    """Per service port a listener that never binds and its route configuration (or a
    scoped proxy's catalogue), virtualOutbound, and the clusters to call: what every
    proxy with the same view shares (`outbound.shared`)."""
    mesh = mesh_ref.mesh
    out = Resources(scope=scoping.catalogue(mesh, viewer), mesh_tls=mesh_tls)
    blocked = outbound_policy.registry_only(viewer)
    allow = (
        cache.build(outbound_policy.BLOCK_ALL, outbound_policy.block_all)
        if blocked
        else cache.build(outbound_policy.ALLOW_ANY, outbound_policy.allow_any)
    ).body
    http_ports = view.outbound_by_port(mesh, viewer)
    l4_ports = view.outbound_l4_by_port(mesh, viewer)
    for port in sorted(http_ports.keys() | l4_ports.keys()):
        hosts = http_ports.get(port, [])
        if hosts and out.scope is not None:  # scoped: fetched on a Host's first request
            unknown = outbound_policy.block_all() if blocked else outbound_policy.allow_any()
            table = out.scope.route_table(cache, port_route_name(port), hosts, False, unknown)
            out.add(types.ROUTE, table)
        elif hosts:
            parts = [
                cache.build(vh.name, routes.virtual_host, vh.name, domains, rs, False, True).body
                for vh, domains, rs in hosts
            ]
            out.add(types.ROUTE, route_configuration(port_route_name(port), [*parts, allow]))
        l4_views = tuple(l4_ports.get(port, ()))
        if not hosts and not any(vh.addresses or rs for vh, _, rs in l4_views):
            continue  # only headless TCP services: virtualOutbound passes them through
        name = port_listener_name(port)
        out.add(
            types.LISTENER,
            cache.build(
                name,
                port_listener,
                port,
                bool(hosts),
                l4_views,
                viewer.telemetry.client,
                blocked,
                out.scope is not None,
            ),
        )
    out.add(
        types.LISTENER,
        cache.build(VIRTUAL_OUTBOUND, virtual_outbound_listener, viewer.telemetry.client, blocked),
    )
    outbound_clusters(mesh, viewer, cache, out, local=False)
    for name in (PASSTHROUGH, INBOUND_PASSTHROUGH):
        out.add(types.CLUSTER, cache.build(name, passthrough_cluster, name))
    if blocked:
        out.add(
            types.CLUSTER,
            cache.build(outbound_policy.BLACKHOLE, outbound_policy.blackhole_cluster),
        )
    return out.part()


def translate(
    mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache, secrets: mtls.WorkloadSecrets | None
) -> Snapshot:
    shared = outbound.shared(_outbound, mesh, proxy, cache, secrets is not None)
    out = Resources()
    out.add_secrets(secrets, cache)

    # Inbound: the original destination port picks the app port; the Host does not matter.
    ingress = sidecar_ingress.ports(proxy)
    ports = sorted({i.target_port for i in proxy.inbound} | set(proxy.app_ports) | ingress)
    inbound_clusters(proxy, ports, cache, out)
    # A port any service declares as HTTP is routed as HTTP; one only TCP or TLS
    # services (or a Sidecar's TCP ingress listener) declare is proxied as TCP.
    http = {i.target_port for i in proxy.inbound if ir.proxying_of(i.protocol) == "http"}
    tcp_ingress = sidecar_ingress.tcp_ports(proxy)
    l4_only = tuple(
        p
        for p in ports
        if p not in http and (p in tcp_ingress or any(i.target_port == p for i in proxy.inbound))
    )
    http_in = tuple(p for p in ports if p not in l4_only)

    def service_of(port: int) -> tuple[str, str, str] | tuple[()]:
        """The one service an app port serves, for metrics (none when several do)."""
        serving = {
            (i.hostname, i.short_name or i.hostname.split(".")[0], proxy.namespace)
            for i in proxy.inbound
            if i.target_port == port
        }
        return next(iter(serving)) if len(serving) == 1 else ()

    for port in http_in:
        name = inbound_route_name(port)
        out.add(types.ROUTE, cache.build(name, inbound_routes, port, proxy.authz, service_of(port)))
    out.add(
        types.LISTENER,
        cache.build(
            VIRTUAL_INBOUND,
            virtual_inbound_listener,
            http_in,
            tuple((p, service_of(p)) for p in l4_only),
            proxy.peer_auth if out.mesh_tls else None,
            proxy.jwt,
            proxy.authz,
            proxy.telemetry.server,
        ),
    )
    jwks_clusters(proxy, cache, out)
    return out.snapshot(shared)


def _passthrough(t: ir.SideTelemetry, blocked: bool = False) -> Filter:
    """TCP to an address the mesh does not know, counted as Istio's PassthroughCluster
    (or, under REGISTRY_ONLY, closed by its BlackHoleCluster)."""
    cluster = outbound_policy.BLACKHOLE if blocked else PASSTHROUGH
    return tcp_proxy(cluster, cluster, observe.tcp(t, outbound=True))


def virtual_outbound_listener(t: ir.SideTelemetry = _CLIENT, blocked: bool = False) -> Listener:
    """Where iptables sends the pod's outbound TCP. It binds the port and hands each
    connection to the listener of its original destination; what none takes is
    passed through untouched (`blocked`, REGISTRY_ONLY: refused)."""
    return Listener(
        name=VIRTUAL_OUTBOUND,
        address=socket_address(ANY_ADDRESS, OUTBOUND_PORT),
        use_original_dst=True,
        traffic_direction=TrafficDirection.OUTBOUND,
        filter_chains=[FilterChain(filters=[_passthrough(t, blocked)])],
    )


def port_listener(
    port: int,
    http: bool = True,
    l4_views: tuple[l4.PortView, ...] = (),
    t: ir.SideTelemetry = _CLIENT,
    blocked: bool = False,
    on_demand: bool = False,
) -> Listener:
    """One service port, any address. It never binds: only virtualOutbound hands it
    connections. TCP and TLS services on the port have chains matching their virtual
    IPs (and SNI names); what else arrives is HTTP, where the Host (a name or the
    service's address) picks the virtual host in RDS `<port>`, or, with no HTTP
    service on the port, passes through. `on_demand`: a scoped proxy fetches a Host's
    virtual host on its first request."""
    name = port_listener_name(port)
    chains = l4.filter_chains(l4_views, by_address=True, t=t)
    logs, trace = observe.http(t, outbound=True)
    first = (scoping.on_demand_filter(),) if on_demand else ()
    rds = port_route_name(port)
    fallback = FilterChain(
        name=f"{name}|http" if http else outbound_policy.BLACKHOLE if blocked else PASSTHROUGH,
        filters=[
            http_connection_manager(name, rds=rds, first=first, access_log=logs, tracing=trace)
            if http
            else _passthrough(t, blocked)
        ],
    )
    return Listener(
        name=name,
        address=socket_address(ANY_ADDRESS, port),
        bind_to_port=False,
        traffic_direction=TrafficDirection.OUTBOUND,
        listener_filters=[l4.tls_inspector()] if l4.needs_tls_inspector(chains) else [],
        filter_chains=[*chains, fallback] if chains else [fallback],
    )


def inbound_route_name(port: int) -> str:
    return f"inbound|{port}"


def inbound_routes(
    port: int, policies: tuple[ir.AuthzPolicy, ...] = (), service: tuple[str, ...] = ()
) -> RouteConfiguration:
    """One app port's inbound route table (RDS, so a policy edit applies to the next
    request), with the workload's AuthorizationPolicies on its virtual host. `service`:
    the one service the port serves, for metrics (none when several share it)."""
    route = to_app(port, service=service)
    vhost = routes.virtual_host(f"inbound|http|{port}", ("*",), (route,))
    vhost.typed_per_filter_config = authz.per_filter_config(policies)
    return RouteConfiguration(name=inbound_route_name(port), virtual_hosts=[vhost])


def virtual_inbound_listener(
    http_ports: tuple[int, ...],
    tcp_ports: tuple[tuple[int, tuple[str, str, str] | tuple[()]], ...] = (),
    peer: ir.PeerAuth | None = None,
    jwt_rules: tuple[ir.JwtRule, ...] = (),
    policies: tuple[ir.AuthzPolicy, ...] = (),
    t: ir.SideTelemetry = _SERVER,
) -> Listener:
    """Where iptables sends the pod's inbound TCP: one HTTP filter chain per app port
    the mesh knows (picked by the original destination port, routed by RDS
    `inbound|<port>`), the rest passed to the app as plain TCP. With mesh mTLS
    (`peer`), each port's chain is split by the port's PeerAuthentication mode into
    mutual TLS and plaintext (`mtls`)."""

    first = (*jwt.http_filters(jwt_rules), *authz.http_filters(ext_authz.provider(policies)))

    def hcm(port: int, certs: bool) -> Filter:
        logs, trace = observe.http(t, outbound=False, mutual_tls=certs)
        return http_connection_manager(
            f"inbound_{port}",
            rds=inbound_route_name(port),
            client_certs=certs,
            first=(telemetry.peer_filter(), *first),
            access_log=logs,
            tracing=trace,
        )

    def http(port: int) -> Callable[[bool], list[Filter]]:
        return lambda certs: [hcm(port, certs)]

    def tcp(port: int, service: tuple[str, str, str] | tuple[()]) -> Callable[[bool], list[Filter]]:
        rbac = authz.network_filters(policies, f"inbound_{port}")
        return lambda certs: [
            *rbac,
            tcp_proxy(
                f"inbound_{port}",
                ir.inbound_cluster_name(port),
                observe.tcp(t, outbound=False, mutual_tls=certs, service=service),
            ),
        ]

    per_port = [(p, http(p)) for p in http_ports] + [(p, tcp(p, s)) for p, s in tcp_ports]
    filter_chains: list[FilterChain] = []
    for port, filters in per_port:
        match = FilterChainMatch(destination_port=port)
        if peer is None:
            filter_chains.append(
                FilterChain(
                    name=f"inbound|{port}", filter_chain_match=match, filters=filters(False)
                )
            )
        else:
            filter_chains += mtls.inbound_chains(
                peer.for_port(port), filters, match, f"inbound|{port}"
            )
    listener_filters = [
        ListenerFilter(
            name="envoy.filters.listener.original_dst", typed_config=Any.pack(OriginalDst())
        )
    ]
    if peer is not None:
        listener_filters.append(l4.tls_inspector())
    return Listener(
        name=VIRTUAL_INBOUND,
        address=socket_address(ANY_ADDRESS, INBOUND_PORT),
        traffic_direction=TrafficDirection.INBOUND,
        listener_filters=listener_filters,
        filter_chains=filter_chains,
        default_filter_chain=FilterChain(
            name="inbound|passthrough",
            filters=[
                tcp_proxy(
                    INBOUND_PASSTHROUGH,
                    INBOUND_PASSTHROUGH,
                    observe.tcp(t, outbound=False),
                )
            ],
        ),
    )


def passthrough_cluster(name: str) -> Cluster:
    """Connects to the connection's original destination. The proxy's own uid is
    exempt from capture, so this does not come back to the sidecar."""
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.ORIGINAL_DST,
        lb_policy=ClusterLbPolicy.CLUSTER_PROVIDED,
        connect_timeout=timedelta(seconds=10),
    )

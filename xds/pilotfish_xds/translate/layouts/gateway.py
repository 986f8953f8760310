"""A gateway: an Envoy of its own at the mesh's edge. Each HTTP server port is a
listener (on the pod's address in local mode, every address in a cluster) whose
connection manager routes by Host with the routes the bound VirtualServices give
(RDS `http.<port>`); a host no server names gets 404. Its clusters are every mesh
service's, as a sidecar's; it tells the destination's sidecar who it is (peer headers),
so the standard metrics show the gateway as the source."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import TrafficDirection
from envoy_data_plane.envoy.config.listener.v3 import FilterChain, FilterChainMatch, Listener
from envoy_data_plane.envoy.config.route.v3 import VirtualHost, VirtualHostTlsRequirementType

from ... import ir, types
from ...codec import EncodeCache
from ...snapshot import Snapshot
from .. import auto_passthrough, gateway_tls, l4, mtls, observe, routes, view
from ..clusters import socket_address
from ..hcm import http_connection_manager
from ..listeners import ANY_ADDRESS
from ..resources import Resources, outbound_clusters, route_configuration

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
TCP_PROTOCOLS = frozenset({"TCP", "MONGO", "MYSQL", "REDIS"})
_CLIENT = ir.Telemetry().client


def route_name(port: int) -> str:
    return f"http.{port}"


def listener_name(address: str, port: int) -> str:
    return f"{address}_{port}"


def translate(
    mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache, secrets: mtls.WorkloadSecrets | None
) -> Snapshot:
    out = Resources()
    out.add_secrets(secrets, cache)
    local = proxy.capture == "local"
    address = proxy.ip if local else ANY_ADDRESS
    secure: dict[int, list[tuple[str, ir.ServerTls]]] = {}
    for server in proxy.servers:
        name = server.name or route_name(server.port)
        if server.protocol == "TLS" and server.tls is not None:  # ISTIO_MUTUAL
            if secrets is not None and server.l4_routes:
                out.add(
                    types.LISTENER,
                    cache.build(
                        listener_name(address, server.port),
                        tcp_listener,
                        address,
                        server.port,
                        server.l4_routes[0],
                        proxy.telemetry.client,
                        server.tls,
                    ),
                )
            continue
        if server.protocol == "TLS":  # passthrough: the client's TLS goes through as is
            out.add(
                types.LISTENER,
                cache.build(
                    listener_name(address, server.port),
                    passthrough_listener,
                    address,
                    server.port,
                    server.l4_routes,
                    proxy.telemetry.client,
                    server.auto_passthrough,
                ),
            )
            continue
        if server.tls is not None and server.tls.mode == "ISTIO_MUTUAL" and secrets is None:
            continue  # no workload certificate to present (a plaintext control plane)
        if server.tls is not None and server.protocol == "HTTPS":
            secure.setdefault(server.port, []).append((name, server.tls))
        elif server.protocol in TCP_PROTOCOLS:
            if server.l4_routes:
                out.add(
                    types.LISTENER,
                    cache.build(
                        listener_name(address, server.port),
                        tcp_listener,
                        address,
                        server.port,
                        server.l4_routes[0],
                        proxy.telemetry.client,
                    ),
                )
            continue
        elif server.tls is not None or server.protocol not in HTTP_PROTOCOLS:
            continue
        else:
            out.add(
                types.LISTENER,
                cache.build(
                    listener_name(address, server.port),
                    http_listener,
                    address,
                    server.port,
                    proxy.telemetry.client,
                ),
            )
        parts = [cache.build(f"{name}|{h.name}", gateway_host, h).body for h in server.hosts]
        out.add(types.ROUTE, route_configuration(name, parts))
    for port, chains in sorted(secure.items()):
        out.add(
            types.LISTENER,
            cache.build(
                listener_name(address, port),
                https_listener,
                address,
                port,
                tuple(chains),
                proxy.telemetry.client,
            ),
        )
    outbound_clusters(mesh, proxy, cache, out, local=local)
    if any(s.auto_passthrough for s in proxy.servers):
        for c in auto_passthrough.twins(view.visible_clusters(mesh, proxy)):
            out.add(types.CLUSTER, cache.build(mtls.sni(c), auto_passthrough.sni_cluster, c, local))
    return out.snapshot()


def gateway_host(host: ir.GatewayHost) -> VirtualHost:
    """With `https_redirect`, Envoy answers every plaintext request with a 301 to https."""
    vhost = routes.virtual_host(host.name, host.domains, host.routes, outbound=True)
    if host.https_redirect:
        vhost.require_tls = VirtualHostTlsRequirementType.ALL
    return vhost


def https_listener(
    address: str,
    port: int,
    servers: tuple[tuple[str, ir.ServerTls], ...],
    t: ir.SideTelemetry = _CLIENT,
) -> Listener:
    """TLS servers sharing a port: a filter chain each, picked by the client's SNI, with
    its own certificate and route table."""
    logs, trace = observe.http(t, outbound=True)
    name = listener_name(address, port)
    chains = [
        FilterChain(
            name=routes_name,
            filter_chain_match=FilterChainMatch(server_names=list(tls.sni)),
            transport_socket=gateway_tls.downstream_socket(tls),
            filters=[
                http_connection_manager(name, rds=routes_name, access_log=logs, tracing=trace)
            ],
        )
        for routes_name, tls in servers
    ]
    return Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=TrafficDirection.OUTBOUND,
        listener_filters=[l4.tls_inspector()],
        filter_chains=chains,
    )


def passthrough_listener(
    address: str,
    port: int,
    l4_routes: tuple[ir.L4Route, ...],
    t: ir.SideTelemetry = _CLIENT,
    auto_hosts: tuple[str, ...] = (),
) -> Listener:
    """TLS passthrough: the SNI of the client's hello picks the `tls` route; its bytes go
    to the route's clusters unopened (the backend holds its own certificate). With
    AUTO_PASSTHROUGH hosts, an SNI naming a mesh cluster goes to it."""
    name = listener_name(address, port)
    chains = [
        FilterChain(
            name=route.name,
            filter_chain_match=FilterChainMatch(server_names=list(route.match.sni_hosts)),
            filters=[l4.route_filter(f"{name}|{route.name}", route, t)],
        )
        for route in l4_routes
    ]
    if auto_hosts:
        return auto_passthrough.listener(name, address, port, auto_hosts, chains, t)
    return Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=TrafficDirection.OUTBOUND,
        listener_filters=[l4.tls_inspector()],
        filter_chains=chains,
    )


def tcp_listener(
    address: str,
    port: int,
    route: ir.L4Route,
    t: ir.SideTelemetry = _CLIENT,
    tls: ir.ServerTls | None = None,
) -> Listener:
    """A TCP server: every connection to the first `tcp` route the bound VirtualServices
    give the port (Istio's order), as bytes. `tls`: a TLS server terminating (mesh mTLS,
    ISTIO_MUTUAL) before the bytes go on."""
    name = listener_name(address, port)
    chain = FilterChain(filters=[l4.route_filter(f"{name}|{route.name}", route, t)])
    if tls is not None:
        chain.transport_socket = gateway_tls.downstream_socket(tls)
    return Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=TrafficDirection.OUTBOUND,
        filter_chains=[chain],
    )


def http_listener(address: str, port: int, t: ir.SideTelemetry = _CLIENT) -> Listener:
    logs, trace = observe.http(t, outbound=True)
    name = listener_name(address, port)
    hcm = http_connection_manager(name, rds=route_name(port), access_log=logs, tracing=trace)
    return Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=TrafficDirection.OUTBOUND,
        filter_chains=[FilterChain(filters=[hcm])],
    )

"""A gateway: an Envoy of its own at the mesh's edge. Each HTTP server port is a
listener (on the pod's address in local mode, every address in a cluster) whose
connection manager routes by Host with the routes the bound VirtualServices give
(RDS `http.<port>`); a host no server names gets 404. Its clusters are every mesh
service's, as a sidecar's; it tells the destination's sidecar who it is (peer headers),
so the standard metrics show the gateway as the source. The gateway workload's
RequestAuthentication and AuthorizationPolicies (selecting its pod, as a sidecar's)
apply to every HTTP request it routes."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import TrafficDirection
from envoy_data_plane.envoy.config.listener.v3 import FilterChain, FilterChainMatch, Listener
from envoy_data_plane.envoy.config.route.v3 import VirtualHost, VirtualHostTlsRequirementType
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)

from ... import ir, types
from ...codec import EncodeCache
from ...snapshot import Snapshot
from .. import (
    authz,
    auto_passthrough,
    ext_authz,
    gateway_tls,
    jwt,
    l4,
    mtls,
    observe,
    routes,
    view,
)
from ..clusters import socket_address
from ..hcm import http_connection_manager
from ..listeners import ANY_ADDRESS
from ..resources import Resources, jwks_clusters, outbound_clusters, route_configuration

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
    policy: Policy = (proxy.jwt, proxy.authz)
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
                    policy,
                ),
            )
        parts = [
            cache.build(f"{name}|{h.name}", gateway_host, h, proxy.authz).body for h in server.hosts
        ]
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
                policy,
            ),
        )
    outbound_clusters(mesh, proxy, cache, out, local=local)
    jwks_clusters(proxy, cache, out)
    if any(s.auto_passthrough for s in proxy.servers):
        for c in auto_passthrough.twins(view.visible_clusters(mesh, proxy)):
            out.add(types.CLUSTER, cache.build(mtls.sni(c), auto_passthrough.sni_cluster, c, local))
    return out.snapshot()


def gateway_host(host: ir.GatewayHost, policies: tuple[ir.AuthzPolicy, ...] = ()) -> VirtualHost:
    """With `https_redirect`, Envoy answers every plaintext request with a 301 to https.
    `policies`: the gateway workload's AuthorizationPolicies, checked for every request
    it routes, as a sidecar checks its inbound ones."""
    vhost = routes.virtual_host(host.name, host.domains, host.routes, outbound=True)
    if host.https_redirect:
        vhost.require_tls = VirtualHostTlsRequirementType.ALL
    if policies:
        vhost.typed_per_filter_config = authz.per_filter_config(policies)
    return vhost


Policy = tuple[tuple[ir.JwtRule, ...], tuple[ir.AuthzPolicy, ...]]
"""The gateway workload's RequestAuthentication rules and AuthorizationPolicies."""


def policy_filters(policy: Policy) -> tuple[HttpFilter, ...]:
    """The HTTP filters of the workload's policies, first on each of its connection
    managers (the rules themselves are per virtual host: `gateway_host`)."""
    rules, policies = policy
    if not rules and not policies:
        return ()  # a gateway without policies runs no policy filters
    return (*jwt.http_filters(rules), *authz.http_filters(ext_authz.provider(policies)))


def https_listener(
    address: str,
    port: int,
    servers: tuple[tuple[str, ir.ServerTls], ...],
    t: ir.SideTelemetry = _CLIENT,
    policy: Policy = ((), ()),
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
                http_connection_manager(
                    name,
                    rds=routes_name,
                    first=policy_filters(policy),
                    access_log=logs,
                    tracing=trace,
                )
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


def http_listener(
    address: str, port: int, t: ir.SideTelemetry = _CLIENT, policy: Policy = ((), ())
) -> Listener:
    logs, trace = observe.http(t, outbound=True)
    name = listener_name(address, port)
    first = policy_filters(policy)
    hcm = http_connection_manager(
        name, rds=route_name(port), first=first, access_log=logs, tracing=trace
    )
    return Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=TrafficDirection.OUTBOUND,
        filter_chains=[FilterChain(filters=[hcm])],
    )

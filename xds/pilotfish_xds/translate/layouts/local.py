"""Local mode: one HTTP listener each way, on the pod's own address.

Outbound `ip:15001` is an HTTP proxy routing every mesh service by Host (RDS
`outbound`); inbound `ip:15006` is the only way peers reach the app, and the Host
(or the `x-pilotfish-inbound` tag a peer's sidecar adds) picks the app port.
A TCP or TLS service port P is a listener of its own at `ip:P`; those connections go
to the peer's app port directly (nothing in them says which app port they are for).
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy_data_plane.envoy.config.core.v3 import TrafficDirection
from envoy_data_plane.envoy.config.listener.v3 import (
    Filter,
    FilterChain,
    FilterChainMatch,
    Listener,
)
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

from ... import ir, types
from ...codec import EncodeCache
from ...ports import INBOUND_PORT, OUTBOUND_PORT, SIDECAR_PORTS
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
from ..listeners import INBOUND_HEADER, OUTBOUND_ROUTE, PASSTHROUGH, tcp_proxy
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


@dataclass(frozen=True, slots=True)
class _Outbound:
    """What every proxy with the same view shares (`outbound.shared`)."""

    part: Part
    blocked: bool
    l4_ports: dict[int, list[l4.PortView]]


def _outbound(
    cache: EncodeCache, mesh: outbound.SameMesh, viewer: ir.Proxy, mesh_tls: bool
) -> _Outbound:
    """The route table (or a scoped proxy's catalogue) and the clusters to call."""
    out = Resources(scope=scoping.catalogue(mesh.mesh, viewer), mesh_tls=mesh_tls)
    http = view.outbound_virtual_hosts(mesh.mesh, viewer)
    blocked = outbound_policy.registry_only(viewer)
    if out.scope is not None:  # scoped: each service is fetched on its first request
        unknown = outbound_policy.block_all() if blocked else outbound_policy.allow_any()
        out.add(types.ROUTE, out.scope.route_table(cache, OUTBOUND_ROUTE, http, True, unknown))
    else:
        parts = [
            cache.build(vh.name, routes.virtual_host, vh.name, domains, rs, True, True).body
            for vh, domains, rs in http
        ]
        # An unknown Host: Istio's 502, or forwarded to it as the app asked (ALLOW_ANY).
        if blocked:
            parts.append(cache.build(outbound_policy.BLOCK_ALL, outbound_policy.block_all).body)
        else:
            parts.append(cache.build(outbound_policy.ALLOW_ANY, outbound_policy.allow_any).body)
        out.add(types.ROUTE, route_configuration(OUTBOUND_ROUTE, parts))
    outbound_clusters(mesh.mesh, viewer, cache, out, local=True)
    if not blocked:
        out.add(types.CLUSTER, cache.build(PASSTHROUGH, outbound_policy.forward_proxy_cluster))
    l4_ports = {p: list(v) for p, v in view.outbound_l4_by_port(mesh.mesh, viewer).items()}
    return _Outbound(out.part(), blocked, l4_ports)


def translate(
    mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache, secrets: mtls.WorkloadSecrets | None
) -> Snapshot:
    shared = outbound.shared(_outbound, mesh, proxy, cache, secrets is not None)
    blocked = shared.blocked
    out = Resources()
    out.add_secrets(secrets, cache)

    inbound = view.inbound_virtual_hosts(proxy)
    peer = proxy.peer_auth if out.mesh_tls else None
    tcp_in = (
        tuple(
            (
                mtls.inbound_sni(i.hostname, i.service_port),
                i.target_port,
                (i.hostname, i.short_name or i.hostname.split(".")[0], proxy.namespace),
            )
            for i in proxy.inbound
            if ir.proxying_of(i.protocol) != "http" and peer.for_port(i.target_port) != "DISABLE"
        )
        if peer is not None
        else ()
    )
    ports = sorted(
        {p for _, _, p, _ in inbound}
        | set(proxy.app_ports)
        | {p for _, p, _ in tcp_in}
        | sidecar_ingress.ports(proxy)
    )
    inbound_clusters(proxy, ports, cache, out)
    out.add(types.ROUTE, cache.build("inbound", _inbound_routes, proxy, tuple(inbound), peer))
    jwks_clusters(proxy, cache, out)
    out.add(
        types.LISTENER,
        cache.build(
            "inbound",
            inbound_listener,
            proxy.ip,
            _listener_mode(peer),
            proxy.jwt,
            tcp_in,
            proxy.authz if tcp_in else (),
            ext_authz.provider(proxy.authz),
            proxy.telemetry.server,
        ),
    )
    out.add(
        types.LISTENER,
        cache.build(
            "outbound",
            outbound_listener,
            proxy.ip,
            proxy.telemetry.client,
            not blocked,
            shared.part.on_demand is not None,
        ),
    )
    for port, views in shared.l4_ports.items():
        if port in SIDECAR_PORTS or port in proxy.app_ports:
            continue  # taken: the operator warns that this TCP/TLS port is unreachable here
        name = f"{proxy.ip}_{port}"
        out.add(
            types.LISTENER,
            cache.build(
                name, l4_listener, name, proxy.ip, port, tuple(views), proxy.telemetry.client
            ),
        )
    return out.snapshot(shared.part)


def l4_listener(
    name: str,
    ip: str,
    port: int,
    views: tuple[l4.PortView, ...],
    t: ir.SideTelemetry = _CLIENT,
) -> Listener:
    """A TCP or TLS service port, bound on the pod's own address (there is no capture
    to bring the connection here): the app connects to `ip:port` to reach the service,
    as with Istio's Sidecar egress listeners that bind without capture."""
    chains = l4.filter_chains(views, by_address=False, t=t)
    return Listener(
        name=name,
        address=socket_address(ip, port),
        traffic_direction=TrafficDirection.OUTBOUND,
        listener_filters=[l4.tls_inspector()] if l4.needs_tls_inspector(chains) else [],
        filter_chains=chains,
    )


def outbound_listener(
    ip: str, t: ir.SideTelemetry = _CLIENT, forward: bool = False, on_demand: bool = False
) -> Listener:
    """An HTTP proxy at ip:15001 routing every mesh service by Host; `forward`: other
    hosts are resolved and forwarded to (ALLOW_ANY); `on_demand`: a Host's virtual host
    is fetched on its first request (scoping)."""
    logs, trace = observe.http(t, outbound=True)
    first = (
        *((scoping.on_demand_filter(),) if on_demand else ()),
        *((outbound_policy.forward_proxy_filter(),) if forward else ()),
    )
    hcm = http_connection_manager(
        "outbound", rds=OUTBOUND_ROUTE, first=first, access_log=logs, tracing=trace
    )
    return _listener("outbound", ip, OUTBOUND_PORT, hcm, TrafficDirection.OUTBOUND)


def _listener_mode(peer: ir.PeerAuth | None) -> ir.PeerMode | None:
    """Every app port shares the inbound listener, so port-level PeerAuthentication
    cannot pick filter chains here (it does in a cluster): the listener accepts what
    any port does, and a port's routes require (or refuse) a verified peer certificate."""
    if peer is None:
        return None
    modes = {peer.mode, *(m for _, m in peer.ports)}
    tls, plain = any(m != "DISABLE" for m in modes), any(m != "STRICT" for m in modes)
    return "PERMISSIVE" if tls and plain else "STRICT" if tls else "DISABLE"


def _inbound_routes(
    proxy: ir.Proxy,
    inbound: tuple[tuple[str, view.Domains, int, ir.Inbound], ...],
    peer: ir.PeerAuth | None = None,
) -> RouteConfiguration:
    """The inbound route table (RDS `inbound`, so a policy edit applies to the next
    request, not only to new connections). Mesh peers say which service port they
    called (INBOUND_HEADER); a request without it is routed by Host, and anything else
    (a peer calling the pod by IP) lands on the first app port. The workload's
    AuthorizationPolicies ride on every virtual host (`authz`)."""
    mode = _listener_mode(peer)

    def app(
        port: int, header: tuple[str, str] | None = None, service: tuple[str, ...] = ()
    ) -> ir.Route:
        need: bool | None = None
        if peer is not None and mode == "PERMISSIVE":
            need = {"STRICT": True, "DISABLE": False}.get(peer.for_port(port))
        return to_app(port, header, need, service)

    def service(i: ir.Inbound) -> tuple[str, ...]:
        return (i.hostname, i.short_name or i.hostname.split(".")[0], proxy.namespace)

    tagged = tuple(
        dict.fromkeys(
            app(i.target_port, (INBOUND_HEADER, f"{i.hostname}:{i.service_port}"), service(i))
            for i in proxy.inbound
        )
    )
    vhosts = [
        routes.virtual_host(name, domains, (*tagged, app(port, None, service(i))))
        for name, domains, port, i in inbound
    ]
    if proxy.app_ports:
        vhosts.append(routes.virtual_host("inbound|*", ("*",), (*tagged, app(proxy.app_ports[0]))))
    policies = authz.per_filter_config(proxy.authz)
    for vh in vhosts:
        vh.typed_per_filter_config = policies
    return RouteConfiguration(
        name="inbound", virtual_hosts=vhosts, request_headers_to_remove=[INBOUND_HEADER]
    )


def inbound_listener(
    ip: str,
    peer: ir.PeerMode | None = None,
    jwt_rules: tuple[ir.JwtRule, ...] = (),
    tcp_in: tuple[tuple[str, int, tuple[str, str, str]], ...] = (),
    policies: tuple[ir.AuthzPolicy, ...] = (),
    custom: ir.ExtAuthz | None = None,
    t: ir.SideTelemetry = _SERVER,
) -> Listener:
    """Peers reach the app only through ip:15006; the Host picks the app port (routes
    from RDS `inbound`). With mesh mTLS, `peer` decides which of mutual TLS and
    plaintext it accepts. `custom`: the workload's CUSTOM authorization provider."""

    first = (*jwt.http_filters(jwt_rules), *authz.http_filters(custom))

    def hcm(client_certs: bool) -> list[Filter]:
        logs, trace = observe.http(t, outbound=False, mutual_tls=client_certs)
        return [
            http_connection_manager(
                "inbound",
                rds="inbound",
                client_certs=client_certs,
                first=(telemetry.peer_filter(), *first),
                access_log=logs,
                tracing=trace,
            )
        ]

    if peer is None:  # no workload certificate: plaintext only
        return _listener("inbound", ip, INBOUND_PORT, hcm(False)[0], TrafficDirection.INBOUND)
    # TCP and TLS ports over mesh mTLS: the SNI names the service port, so the
    # connection can be handed to its app port (there is no original destination).
    tcp_chains = [
        FilterChain(
            name=f"inbound|tcp|{port}",
            filter_chain_match=FilterChainMatch(server_names=[sni], transport_protocol="tls"),
            transport_socket=mtls.server_socket(),
            filters=[
                *authz.network_filters(policies, f"inbound_{port}"),
                tcp_proxy(
                    f"inbound_{port}",
                    ir.inbound_cluster_name(port),
                    observe.tcp(t, outbound=False, mutual_tls=True, service=service),
                ),
            ],
        )
        for sni, port, service in tcp_in
    ]
    return Listener(
        name="inbound",
        address=socket_address(ip, INBOUND_PORT),
        traffic_direction=TrafficDirection.INBOUND,
        listener_filters=[l4.tls_inspector()],
        filter_chains=[*tcp_chains, *mtls.inbound_chains(peer, hcm)],
    )


def _listener(name: str, ip: str, port: int, hcm: object, direction: TrafficDirection) -> Listener:
    # The direction makes a traced request's span a client (outbound) or server span.
    return Listener(
        name=name,
        address=socket_address(ip, port),
        traffic_direction=direction,
        filter_chains=[FilterChain(filters=[hcm])],  # type: ignore[list-item]
    )

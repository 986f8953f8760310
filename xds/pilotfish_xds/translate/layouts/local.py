"""Local mode: one HTTP listener each way, on the pod's own address.

Outbound `ip:15001` is an HTTP proxy routing every mesh service by Host (RDS
`outbound`); inbound `ip:15006` is the only way peers reach the app, and the Host
(or the `x-pilotfish-inbound` tag a peer's sidecar adds) picks the app port.
A TCP or TLS service port P is a listener of its own at `ip:P`; those connections go
to the peer's app port directly (nothing in them says which app port they are for).
"""

from __future__ import annotations

from envoy_data_plane.envoy.config.listener.v3 import FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration, VirtualHost

from ... import ir, types
from ...codec import EncodeCache
from ...ports import INBOUND_PORT, OUTBOUND_PORT, SIDECAR_PORTS
from ...snapshot import Snapshot
from .. import l4, mtls, routes, view
from ..clusters import socket_address
from ..hcm import http_connection_manager
from ..listeners import INBOUND_HEADER, OUTBOUND_ROUTE
from ..resources import Resources, inbound_clusters, outbound_clusters, route_configuration, to_app


def translate(
    mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache, secrets: mtls.WorkloadSecrets | None
) -> Snapshot:
    out = Resources()
    out.add_secrets(secrets, cache)
    parts = [
        cache.build(vh.name, routes.virtual_host, vh.name, domains, rs, True).body
        for vh, domains, rs in view.outbound_virtual_hosts(mesh, proxy)
    ]
    out.add(types.ROUTE, route_configuration(OUTBOUND_ROUTE, parts))
    outbound_clusters(mesh, proxy, cache, out, local=True)

    inbound = view.inbound_virtual_hosts(proxy)
    ports = sorted({p for _, _, p in inbound} | set(proxy.app_ports))
    inbound_clusters(proxy, ports, cache, out)
    peer = proxy.peer_auth if out.mesh_tls else None
    out.add(types.LISTENER, cache.build("inbound", _inbound, proxy, tuple(inbound), peer))
    out.add(types.LISTENER, cache.build("outbound", outbound_listener, proxy.ip))
    for port, views in view.outbound_l4_by_port(mesh, proxy).items():
        if port in SIDECAR_PORTS or port in proxy.app_ports:
            continue  # taken: the operator warns that this TCP/TLS port is unreachable here
        name = f"{proxy.ip}_{port}"
        out.add(types.LISTENER, cache.build(name, l4_listener, name, proxy.ip, port, tuple(views)))
    return out.snapshot()


def l4_listener(name: str, ip: str, port: int, views: tuple[l4.PortView, ...]) -> Listener:
    """A TCP or TLS service port, bound on the pod's own address (there is no capture
    to bring the connection here): the app connects to `ip:port` to reach the service,
    as with Istio's Sidecar egress listeners that bind without capture."""
    chains = l4.filter_chains(views, by_address=False)
    return Listener(
        name=name,
        address=socket_address(ip, port),
        listener_filters=[l4.tls_inspector()] if l4.needs_tls_inspector(chains) else [],
        filter_chains=chains,
    )


def outbound_listener(ip: str) -> Listener:
    """An HTTP proxy at ip:15001 routing every mesh service by Host."""
    return _listener(
        "outbound", ip, OUTBOUND_PORT, http_connection_manager("outbound", rds=OUTBOUND_ROUTE)
    )


def _inbound(
    proxy: ir.Proxy,
    inbound: tuple[tuple[str, view.Domains, int], ...],
    peer: ir.PeerAuth | None = None,
) -> Listener:
    # Mesh peers say which service port they called (INBOUND_HEADER); a request without
    # it is routed by Host, and anything else (a peer calling the pod by IP) lands on
    # the first app port.
    #
    # Every app port shares this listener, so port-level PeerAuthentication cannot pick
    # filter chains here (it does in a cluster): the listener accepts what any port
    # does, and a port's routes require (or refuse) a verified peer certificate.
    modes = {peer.mode, *(m for _, m in peer.ports)} if peer is not None else set()
    listener_mode: ir.PeerMode | None = None
    if peer is not None:
        tls, plain = any(m != "DISABLE" for m in modes), any(m != "STRICT" for m in modes)
        listener_mode = "PERMISSIVE" if tls and plain else "STRICT" if tls else "DISABLE"

    def app(port: int, header: tuple[str, str] | None = None) -> ir.Route:
        need: bool | None = None
        if peer is not None and listener_mode == "PERMISSIVE":
            need = {"STRICT": True, "DISABLE": False}.get(peer.for_port(port))
        return to_app(port, header, need)

    tagged = tuple(
        dict.fromkeys(
            app(i.target_port, (INBOUND_HEADER, f"{i.hostname}:{i.service_port}"))
            for i in proxy.inbound
        )
    )
    vhosts = [
        routes.virtual_host(name, domains, (*tagged, app(port))) for name, domains, port in inbound
    ]
    if proxy.app_ports:
        vhosts.append(routes.virtual_host("inbound|*", ("*",), (*tagged, app(proxy.app_ports[0]))))
    return inbound_listener(proxy.ip, vhosts, listener_mode)


def inbound_listener(
    ip: str, virtual_hosts: list[VirtualHost], peer: ir.PeerMode | None = None
) -> Listener:
    """Peers reach the app only through ip:15006; the Host picks the app port.

    Envoy checks an inline route table's clusters when the listener arrives (RDS ones
    it does not): a proxy still warming the inbound clusters would reject the listener.
    As Istio does, the check is off; the server sends listeners only after the proxy
    has acknowledged their clusters anyway (`protocol.SEND_AFTER`)."""
    config = RouteConfiguration(
        name="inbound",
        virtual_hosts=virtual_hosts,
        request_headers_to_remove=[INBOUND_HEADER],
        validate_clusters=False,
    )
    if peer is None:  # no workload certificate: plaintext only
        return _listener(
            "inbound", ip, INBOUND_PORT, http_connection_manager("inbound", route_config=config)
        )
    return Listener(
        name="inbound",
        address=socket_address(ip, INBOUND_PORT),
        listener_filters=[l4.tls_inspector()],
        filter_chains=mtls.inbound_chains(
            peer,
            lambda client_certs: [
                http_connection_manager("inbound", route_config=config, client_certs=client_certs)
            ],
        ),
    )


def _listener(name: str, ip: str, port: int, hcm: object) -> Listener:
    return Listener(
        name=name,
        address=socket_address(ip, port),
        filter_chains=[FilterChain(filters=[hcm])],  # type: ignore[list-item]
    )

"""The sidecar's listeners: outbound (clients → mesh) and inbound (mesh → app).

Local mode has one HTTP listener each way, on the pod's address. With iptables
capture (in a cluster), connections arrive redirected and the original destination
decides: `virtualOutbound` hands each one to the listener of its destination port
(`0.0.0.0_<port>`, which routes by Host through RDS `<port>`), and `virtualInbound`
picks the filter chain of the app port the peer called.
"""

from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterDiscoveryType,
    ClusterLbPolicy,
)
from envoy_data_plane.envoy.config.listener.v3 import (
    Filter,
    FilterChain,
    FilterChainMatch,
    Listener,
    ListenerFilter,
)
from envoy_data_plane.envoy.config.route.v3 import (
    Route,
    RouteAction,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.listener.original_dst.v3 import OriginalDst
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpFilter,
    Rds,
)
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3 import TcpProxy
from envoy_data_plane.google.protobuf import Any

from ..ports import ADMIN_PORT as ADMIN_PORT
from ..ports import INBOUND_PORT as INBOUND_PORT
from ..ports import OUTBOUND_PORT as OUTBOUND_PORT
from .clusters import ads, socket_address

OUTBOUND_ROUTE = "outbound"
INBOUND_HEADER = "x-pilotfish-inbound"
"""Local mode: `<host>:<service port>` a request is for; the inbound side routes on it."""
VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_INBOUND = "virtualInbound"
PASSTHROUGH = "PassthroughCluster"
"""Outbound connections to destinations the mesh does not know go where they were headed."""
INBOUND_PASSTHROUGH = "InboundPassthroughCluster"
"""Inbound connections to ports no service declares go straight to the app."""
ANY_ADDRESS = "0.0.0.0"


def _http_filter(stat_prefix: str, hcm: HttpConnectionManager) -> Filter:
    hcm.codec_type = HttpConnectionManagerCodecType.AUTO
    hcm.stat_prefix = stat_prefix
    hcm.http_filters = [
        HttpFilter(name="envoy.filters.http.router", typed_config=Any.pack(Router()))
    ]
    return Filter(name="envoy.filters.network.http_connection_manager", typed_config=Any.pack(hcm))


def _tcp_filter(stat_prefix: str, cluster: str) -> Filter:
    return Filter(
        name="envoy.filters.network.tcp_proxy",
        typed_config=Any.pack(TcpProxy(stat_prefix=stat_prefix, cluster=cluster)),
    )


def _http_listener(name: str, ip: str, port: int, hcm: HttpConnectionManager) -> Listener:
    return Listener(
        name=name,
        address=socket_address(ip, port),
        filter_chains=[FilterChain(filters=[_http_filter(name, hcm)])],
    )


def outbound_listener(ip: str) -> Listener:
    """Local mode: an HTTP proxy at ip:15001 routing every mesh service by Host."""
    hcm = HttpConnectionManager(rds=Rds(config_source=ads(), route_config_name=OUTBOUND_ROUTE))
    return _http_listener("outbound", ip, OUTBOUND_PORT, hcm)


def inbound_listener(ip: str, virtual_hosts: list[VirtualHost]) -> Listener:
    """Local mode: peers reach the app only through ip:15006; the Host picks the app port.

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
    return _http_listener("inbound", ip, INBOUND_PORT, HttpConnectionManager(route_config=config))


# ---------------------------------------------------------------- iptables capture


def port_route_name(port: int) -> str:
    return str(port)


def port_listener_name(port: int) -> str:
    return f"{ANY_ADDRESS}_{port}"


def virtual_outbound_listener() -> Listener:
    """Where iptables sends the pod's outbound TCP. It binds the port and hands each
    connection to the listener of its original destination; what none takes is
    passed through untouched."""
    return Listener(
        name=VIRTUAL_OUTBOUND,
        address=socket_address(ANY_ADDRESS, OUTBOUND_PORT),
        use_original_dst=True,
        filter_chains=[FilterChain(filters=[_tcp_filter(PASSTHROUGH, PASSTHROUGH)])],
    )


def port_listener(port: int) -> Listener:
    """HTTP to any address on one service port: the Host (a name or the service's
    address) picks the virtual host in RDS `<port>`. It never binds: only
    virtualOutbound hands it connections."""
    name = port_listener_name(port)
    hcm = HttpConnectionManager(
        rds=Rds(config_source=ads(), route_config_name=port_route_name(port))
    )
    return Listener(
        name=name,
        address=socket_address(ANY_ADDRESS, port),
        bind_to_port=False,
        filter_chains=[FilterChain(filters=[_http_filter(name, hcm)])],
    )


def allow_any(cluster: str = PASSTHROUGH) -> VirtualHost:
    """The last virtual host of every port's routes: a host the mesh does not know
    (an external address on a mesh port) is still reachable, as without a sidecar."""
    return VirtualHost(
        name="allow_any",
        domains=["*"],
        routes=[
            Route(
                name="allow_any",
                match=RouteMatch(prefix="/"),
                route=RouteAction(cluster=cluster, timeout=timedelta(0)),
            )
        ],
    )


def virtual_inbound_listener(chains: list[tuple[int, VirtualHost]]) -> Listener:
    """Where iptables sends the pod's inbound TCP: one HTTP filter chain per app port
    the mesh knows (picked by the original destination port), the rest passed to the
    app as plain TCP."""
    filter_chains = [
        FilterChain(
            name=f"inbound|{port}",
            filter_chain_match=FilterChainMatch(destination_port=port),
            filters=[
                _http_filter(
                    f"inbound_{port}",
                    HttpConnectionManager(
                        route_config=RouteConfiguration(
                            name=f"inbound|{port}", virtual_hosts=[vhost], validate_clusters=False
                        )
                    ),
                )
            ],
        )
        for port, vhost in chains
    ]
    return Listener(
        name=VIRTUAL_INBOUND,
        address=socket_address(ANY_ADDRESS, INBOUND_PORT),
        listener_filters=[
            ListenerFilter(
                name="envoy.filters.listener.original_dst", typed_config=Any.pack(OriginalDst())
            )
        ],
        filter_chains=filter_chains,
        default_filter_chain=FilterChain(
            name="inbound|passthrough",
            filters=[_tcp_filter(INBOUND_PASSTHROUGH, INBOUND_PASSTHROUGH)],
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

"""Names every layout shares (listener, route and cluster names Envoy and our tools
see) and the TCP proxy filter. The listeners themselves live in `layouts/`."""

from __future__ import annotations

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
from envoy_data_plane.envoy.config.listener.v3 import Filter
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3 import (
    TcpProxy,
    TcpProxyTcpAccessLogOptions,
    TcpProxyWeightedCluster,
)
from envoy_data_plane.google.protobuf import Any

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


def port_route_name(port: int) -> str:
    return str(port)


def port_listener_name(port: int) -> str:
    return f"{ANY_ADDRESS}_{port}"


def tcp_proxy(
    stat_prefix: str,
    cluster: str = "",
    access_log: tuple[AccessLog, ...] = (),
    weighted: TcpProxyWeightedCluster | None = None,
) -> Filter:
    """`access_log`: the standard TCP metrics (telemetry.tcp_*_logs)."""
    config = TcpProxy(stat_prefix=stat_prefix, access_log=list(access_log))
    if weighted is not None:
        config.weighted_clusters = weighted
    else:
        config.cluster = cluster
    if access_log:
        config.access_log_options = TcpProxyTcpAccessLogOptions(flush_access_log_on_connected=True)
    return Filter(name="envoy.filters.network.tcp_proxy", typed_config=Any.pack(config))

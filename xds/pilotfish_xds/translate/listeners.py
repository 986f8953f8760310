"""The sidecar's listeners: outbound (clients → mesh) and inbound (mesh → app)."""

from __future__ import annotations

from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration, VirtualHost
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpFilter,
    Rds,
)
from envoy_data_plane.google.protobuf import Any

from .clusters import ads, socket_address

OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
ADMIN_PORT = 15000
OUTBOUND_ROUTE = "outbound"
INBOUND_HEADER = "x-pilotfish-inbound"
"""Local mode: `<host>:<service port>` a request is for; the inbound side routes on it."""


def _http_listener(name: str, ip: str, port: int, hcm: HttpConnectionManager) -> Listener:
    hcm.codec_type = HttpConnectionManagerCodecType.AUTO
    hcm.stat_prefix = name
    hcm.http_filters = [
        HttpFilter(name="envoy.filters.http.router", typed_config=Any.pack(Router()))
    ]
    return Listener(
        name=name,
        address=socket_address(ip, port),
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=Any.pack(hcm),
                    )
                ]
            )
        ],
    )


def outbound_listener(ip: str) -> Listener:
    """Local mode: an HTTP proxy at ip:15001 routing every mesh service by Host."""
    hcm = HttpConnectionManager(rds=Rds(config_source=ads(), route_config_name=OUTBOUND_ROUTE))
    return _http_listener("outbound", ip, OUTBOUND_PORT, hcm)


def inbound_listener(ip: str, virtual_hosts: list[VirtualHost]) -> Listener:
    """Local mode: peers reach the app only through ip:15006; the Host picks the app port."""
    config = RouteConfiguration(
        name="inbound", virtual_hosts=virtual_hosts, request_headers_to_remove=[INBOUND_HEADER]
    )
    return _http_listener("inbound", ip, INBOUND_PORT, HttpConnectionManager(route_config=config))

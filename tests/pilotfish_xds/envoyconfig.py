"""Envoy bootstrap and a minimal dynamic config built with envoy-data-plane types."""

from __future__ import annotations

import datetime
import json
import socket

from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    AggregatedConfigSource,
    ApiVersion,
    ConfigSource,
    DataSource,
    SocketAddress,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    Route,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpFilter,
    Rds,
)
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher
from envoy_data_plane.google.protobuf import Any

from pilotfish_xds.codec import encode
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.types import CLUSTER, LISTENER, ROUTE

NODE = "envoy-under-test"
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bootstrap(xds_port: int, admin_port: int, api_type: str) -> str:
    # JSON is YAML: no templating engine needed.
    ads = {"ads": {}, "resource_api_version": "V3"}
    return json.dumps(
        {
            "node": {"id": NODE, "cluster": "test"},
            "admin": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
            },
            "dynamic_resources": {
                "ads_config": {
                    "api_type": api_type,
                    "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
                },
                "cds_config": ads,
                "lds_config": ads,
            },
            "static_resources": {
                "clusters": [
                    {
                        "name": "xds",
                        "type": "STATIC",
                        "connect_timeout": "1s",
                        "typed_extension_protocol_options": {
                            HTTP_OPTIONS: {
                                "@type": "type.googleapis.com/" + HTTP_OPTIONS,
                                "explicit_http_config": {"http2_protocol_options": {}},
                            }
                        },
                        "load_assignment": {
                            "cluster_name": "xds",
                            "endpoints": [
                                {
                                    "lb_endpoints": [
                                        {
                                            "endpoint": {
                                                "address": {
                                                    "socket_address": {
                                                        "address": "127.0.0.1",
                                                        "port_value": xds_port,
                                                    }
                                                }
                                            }
                                        }
                                    ]
                                }
                            ],
                        },
                    }
                ]
            },
        }
    )


def config(listen_port: int, body: str, regex: str | None = None) -> Snapshot:
    address = Address(socket_address=SocketAddress(address="127.0.0.1", port_value=listen_port))
    cluster = Cluster(
        name="backend",
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=datetime.timedelta(seconds=1),
        load_assignment=ClusterLoadAssignment(
            cluster_name="backend",
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[
                        LbEndpoint(
                            endpoint=Endpoint(
                                address=Address(
                                    socket_address=SocketAddress(address="127.0.0.1", port_value=9)
                                )
                            )
                        )
                    ]
                )
            ],
        ),
    )
    hcm = HttpConnectionManager(
        stat_prefix="http",
        rds=Rds(
            route_config_name="local",
            config_source=ConfigSource(
                ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3
            ),
        ),
        http_filters=[
            HttpFilter(name="envoy.filters.http.router", typed_config=Any.pack(Router()))
        ],
    )
    listener = Listener(
        name="http",
        address=address,
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
    match = RouteMatch(safe_regex=RegexMatcher(regex=regex)) if regex else RouteMatch(prefix="/")
    route = RouteConfiguration(
        name="local",
        virtual_hosts=[
            VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    Route(
                        match=match,
                        direct_response=DirectResponseAction(
                            status=200, body=DataSource(inline_string=body)
                        ),
                    )
                ],
            )
        ],
    )
    return Snapshot(
        {
            CLUSTER: [encode("backend", cluster)],
            LISTENER: [encode("http", listener)],
            ROUTE: [encode("local", route)],
        },
        references={ROUTE: frozenset({"local"})},
    )

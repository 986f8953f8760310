"""Istio's outboundTrafficPolicy: what a sidecar does with a destination the mesh does
not know. ALLOW_ANY passes it through (`PassthroughCluster`, layouts/iptables.py);
REGISTRY_ONLY answers HTTP with 502 (Istio's `block_all` virtual host) and sends TCP to
`BlackHoleCluster`, a cluster without endpoints, so the connection is closed at once.
"""

from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    Route,
    RouteMatch,
    VirtualHost,
)

from .. import ir

BLACKHOLE = "BlackHoleCluster"
BLOCK_ALL = "block_all"


def registry_only(proxy: ir.Proxy) -> bool:
    return proxy.outbound_policy == "REGISTRY_ONLY"


def block_all() -> VirtualHost:
    """The last virtual host of every outbound route table under REGISTRY_ONLY."""
    return VirtualHost(
        name=BLOCK_ALL,
        domains=["*"],
        routes=[
            Route(
                name=BLOCK_ALL,
                match=RouteMatch(prefix="/"),
                direct_response=DirectResponseAction(status=502),
            )
        ],
    )


def blackhole_cluster() -> Cluster:
    return Cluster(
        name=BLACKHOLE, type=ClusterDiscoveryType.STATIC, connect_timeout=timedelta(seconds=10)
    )

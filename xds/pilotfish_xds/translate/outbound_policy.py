"""Istio's outboundTrafficPolicy: what a sidecar does with a destination the mesh does
not know. ALLOW_ANY passes it through to `PassthroughCluster` (the `allow_any` virtual
host): with iptables an ORIGINAL_DST cluster (layouts/iptables.py); in local mode, where
the app uses the sidecar as its HTTP proxy and there is no original destination, a
dynamic forward proxy that resolves the Host by DNS (`forward_proxy_*` here).
REGISTRY_ONLY answers HTTP with 502 (Istio's `block_all` virtual host) and sends TCP to
`BlackHoleCluster`, a cluster without endpoints, so the connection is closed at once.
"""

from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterCustomClusterType,
    ClusterDiscoveryType,
    ClusterDnsLookupFamily,
    ClusterLbPolicy,
)
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    Route,
    RouteAction,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.clusters.dynamic_forward_proxy.v3 import ClusterConfig
from envoy_data_plane.envoy.extensions.common.dynamic_forward_proxy.v3 import DnsCacheConfig
from envoy_data_plane.envoy.extensions.filters.http.dynamic_forward_proxy.v3 import FilterConfig
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)
from envoy_data_plane.google.protobuf import Any

from .. import ir
from .listeners import PASSTHROUGH

BLACKHOLE = "BlackHoleCluster"
BLOCK_ALL = "block_all"
ALLOW_ANY = "allow_any"
_DNS_CACHE = "passthrough"
_FORWARD_PROXY = "envoy.filters.http.dynamic_forward_proxy"


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


def allow_any(cluster: str = PASSTHROUGH) -> VirtualHost:
    """The last virtual host of outbound routes under ALLOW_ANY: a host the mesh does not
    know is still reachable, as without a sidecar."""
    return VirtualHost(
        name=ALLOW_ANY,
        domains=["*"],
        routes=[
            Route(
                name=ALLOW_ANY,
                match=RouteMatch(prefix="/"),
                route=RouteAction(cluster=cluster, timeout=timedelta(0)),
            )
        ],
    )


def _dns_cache() -> DnsCacheConfig:
    # Both the filter and the cluster name the same cache; Envoy requires them equal.
    return DnsCacheConfig(name=_DNS_CACHE, dns_lookup_family=ClusterDnsLookupFamily.V4_PREFERRED)


def forward_proxy_filter() -> HttpFilter:
    """Resolves the Host of requests routed to the forward proxy cluster (and only those:
    routes to mesh clusters pass the filter untouched)."""
    config = FilterConfig(dns_cache_config=_dns_cache())
    return HttpFilter(name=_FORWARD_PROXY, typed_config=Any.pack(config))


def forward_proxy_cluster() -> Cluster:
    """Local mode's PassthroughCluster: connects to the request's Host (port 80 when it
    names none), as the app would have without a sidecar."""
    return Cluster(
        name=PASSTHROUGH,
        connect_timeout=timedelta(seconds=10),
        lb_policy=ClusterLbPolicy.CLUSTER_PROVIDED,
        cluster_type=ClusterCustomClusterType(
            name="envoy.clusters.dynamic_forward_proxy",
            typed_config=Any.pack(ClusterConfig(dns_cache_config=_dns_cache())),
        ),
    )

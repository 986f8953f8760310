"""TCP and TLS service ports: a TCP proxy per route, chosen by filter-chain match.

Connections to these ports are never parsed as HTTP. A VirtualService `tcp` route
matches on the destination address (`destinationSubnets`), a `tls` route also on the
SNI name the client sent (`sniHosts`, read by the TLS inspector without decrypting);
the client's labels and namespace were applied when the proxy's view was taken. A
route sends to weighted clusters. Envoy picks the most specific chain, as it does for
Istio; two routes with the same match keep the first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from envoy_data_plane.envoy.config.core.v3 import CidrRange
from envoy_data_plane.envoy.config.listener.v3 import (
    Filter,
    FilterChain,
    FilterChainMatch,
    ListenerFilter,
)
from envoy_data_plane.envoy.extensions.filters.listener.tls_inspector.v3 import TlsInspector
from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3 import (
    TcpProxyWeightedCluster,
    TcpProxyWeightedClusterClusterWeight,
)
from envoy_data_plane.google.protobuf import Any

from .. import ir
from . import observe
from .listeners import tcp_proxy

_CLIENT = ir.Telemetry().client
PortView = tuple[ir.VirtualHost, tuple[str, ...], tuple[ir.L4Route, ...]]
"""A TCP or TLS service port as one proxy sees it: its names and its routes."""


def tls_inspector() -> ListenerFilter:
    return ListenerFilter(
        name="envoy.filters.listener.tls_inspector", typed_config=Any.pack(TlsInspector())
    )


def route_filter(stat_prefix: str, route: ir.L4Route, t: ir.SideTelemetry = _CLIENT) -> Filter:
    logs = observe.tcp(t, outbound=True)
    if len(route.clusters) == 1:
        return tcp_proxy(stat_prefix, route.clusters[0].cluster, logs)
    weighted = TcpProxyWeightedCluster(
        clusters=[
            TcpProxyWeightedClusterClusterWeight(name=c.cluster, weight=c.weight)
            for c in route.clusters
        ]
    )
    return tcp_proxy(stat_prefix, access_log=logs, weighted=weighted)


def _cidr(value: str) -> CidrRange:
    net = ipaddress.ip_network(value, strict=False)
    return CidrRange(address_prefix=str(net.network_address), prefix_len=net.prefixlen)


def filter_chains(
    ports: Sequence[PortView], by_address: bool, t: ir.SideTelemetry = _CLIENT
) -> list[FilterChain]:
    """The chains of one listener port. `by_address` (iptables capture): a service's own
    routes match its virtual IPs, so services sharing the port stay apart. Without it
    (local mode, where every connection is to the pod's own address) a TLS service's
    default route matches its names as SNI, and of TCP services on one port the first
    takes the port."""
    out: list[FilterChain] = []
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    sole_tls = sum(1 for vh, _, _ in ports if vh.proxying == "tls") == 1
    for vh, names, routes in ports:
        for route in routes:
            subnets = route.match.destination_subnets
            sni = route.match.sni_hosts
            if not subnets and by_address:
                if not vh.addresses and not sni:
                    continue  # headless: the client calls pods directly, passed through
                subnets = vh.addresses if not sni else ()
            if route.name == "default" and vh.proxying == "tls" and not by_address and not sole_tls:
                sni = names
            key = (tuple(subnets), tuple(sni))
            if key in seen:
                continue
            seen.add(key)
            out.append(
                FilterChain(
                    name=f"{vh.name}|{route.name}",
                    filter_chain_match=FilterChainMatch(
                        prefix_ranges=[_cidr(s) for s in subnets], server_names=list(sni)
                    ),
                    filters=[route_filter(f"outbound|{vh.port}||{vh.hostname}", route, t)],
                )
            )
    return out


def needs_tls_inspector(chains: Sequence[FilterChain]) -> bool:
    """Only where a chain matches on SNI: the inspector waits for the client's first
    bytes, which would stall a protocol where the server speaks first."""
    return any(c.filter_chain_match.server_names for c in chains if c.filter_chain_match)

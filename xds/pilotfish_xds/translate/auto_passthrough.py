"""A gateway's TLS AUTO_PASSTHROUGH server (Istio's east-west gateway): the client's
SNI names a mesh cluster in mesh mTLS form, `outbound_.<port>_.<subset>_.<host>`, and
the connection goes to that cluster's endpoints unopened, with no VirtualService. The
SNI cluster filter sets the TCP proxy's cluster from the SNI; each mesh cluster the
gateway sees gets a twin of that name, without TLS of its own (the client's mTLS goes
through end to end to the destination's sidecar), sharing the original's endpoints
(EDS by the original's name)."""

from __future__ import annotations

import dataclasses

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.config.core.v3 import TrafficDirection
from envoy_data_plane.envoy.config.listener.v3 import (
    Filter,
    FilterChain,
    FilterChainMatch,
    Listener,
)
from envoy_data_plane.envoy.extensions.filters.network.sni_cluster.v3 import SniCluster
from envoy_data_plane.google.protobuf import Any

from .. import ir
from . import l4, mtls, observe
from .clusters import outbound_cluster, socket_address
from .listeners import tcp_proxy
from .outbound_policy import BLACKHOLE


def listener(
    name: str,
    address: str,
    port: int,
    hosts: tuple[str, ...],
    chains: list[FilterChain],
    t: ir.SideTelemetry,
) -> Listener:
    """`chains`: the port's PASSTHROUGH chains (their SNI match is more specific); the
    AUTO_PASSTHROUGH chain takes the server's host names (`*` or `*.local`: any)."""
    names = [] if "*" in hosts else list(hosts)
    # The cluster named here is used only when the SNI filter sets none (no SNI).
    proxy = tcp_proxy(f"{name}|auto", BLACKHOLE, observe.tcp(t, outbound=True))
    auto = FilterChain(
        name="auto_passthrough",
        filter_chain_match=FilterChainMatch(server_names=names),
        filters=[
            Filter(name="envoy.filters.network.sni_cluster", typed_config=Any.pack(SniCluster())),
            proxy,
        ],
    )
    return Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=TrafficDirection.OUTBOUND,
        listener_filters=[l4.tls_inspector()],
        filter_chains=[*chains, auto],
    )


def twins(clusters: list[ir.Cluster]) -> list[ir.Cluster]:
    """The mesh clusters reachable by SNI, one per name (a TCP port's SNI names no
    subset: its service-wide cluster is the one)."""
    out: dict[str, ir.Cluster] = {}
    for c in clusters:
        if c.discovery != "eds" or c.policy.lb.policy == "PASSTHROUGH":
            continue
        if ir.proxying_of(c.protocol) != "http" and c.subset:
            continue
        out.setdefault(mtls.sni(c), c)
    return list(out.values())


def sni_cluster(c: ir.Cluster, local: bool) -> cluster.Cluster:
    plain = dataclasses.replace(c, policy=dataclasses.replace(c.policy, tls=None))
    twin = outbound_cluster(plain, local)
    twin.name = mtls.sni(c)
    return twin

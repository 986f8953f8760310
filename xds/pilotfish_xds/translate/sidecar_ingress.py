"""A Sidecar's ingress listeners (Istio's `ingress[]`): requests arriving for a listener's
port go to its `defaultEndpoint` instead of the pod's own address. `127.0.0.1:P` is the
loopback, `0.0.0.0:P` the pod's address at P, `unix://path` a socket. The listener's
`connectionPool` (else the Sidecar's `inboundConnectionPool`) limits that inbound cluster.
"""

from __future__ import annotations

from datetime import timedelta

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.config.core.v3 import Address, Pipe
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.endpoint.v3 import Endpoint as EnvoyEndpoint

from .. import ir
from . import circuit_breakers, clusters

_ANY = ("0.0.0.0", "::", "")


def ports(proxy: ir.Proxy) -> set[int]:
    return {i.port for i in proxy.ingress}


def tcp_ports(proxy: ir.Proxy) -> set[int]:
    """Ingress ports proxied as bytes (TCP, TLS): never parsed as HTTP."""
    return {i.port for i in proxy.ingress if ir.proxying_of(i.protocol.lower()) != "http"}


def target(proxy: ir.Proxy, port: int) -> tuple[tuple[str, int] | str, ir.ConnectionPool | None]:
    """Where the inbound cluster for the app `port` sends, and its connection pool."""
    for listener in proxy.ingress:
        if listener.port == port:
            where = listener.endpoint
            if isinstance(where, tuple) and where[0] in _ANY:
                where = (proxy.ip, where[1])
            return where, listener.pool or proxy.inbound_pool
    return (proxy.ip, port), proxy.inbound_pool


def inbound_cluster(
    where: tuple[str, int] | str, port: int, http2: bool, pool: ir.ConnectionPool | None
) -> cluster.Cluster:
    """`inbound|<port>||` to `where`; circuit breakers only when a pool is set (the
    inbound clusters of a workload without a Sidecar stay exactly as before)."""
    name = ir.inbound_cluster_name(port)
    if isinstance(where, str):
        socket = Address(pipe=Pipe(path=where.removeprefix("unix://")))
        out = cluster.Cluster(
            name=name,
            type=cluster.ClusterDiscoveryType.STATIC,
            connect_timeout=timedelta(seconds=10),
            load_assignment=ClusterLoadAssignment(
                cluster_name=name,
                endpoints=[
                    LocalityLbEndpoints(
                        lb_endpoints=[LbEndpoint(endpoint=EnvoyEndpoint(address=socket))]
                    )
                ],
            ),
        )
    else:
        out = clusters.single_host_cluster(name, where[0], where[1])
    if http2:
        out.typed_extension_protocol_options = circuit_breakers.http2_only()
    if pool is not None:
        circuit_breakers.apply(out, pool, http2)
    return out

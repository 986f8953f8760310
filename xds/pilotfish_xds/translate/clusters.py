"""IR clusters and endpoints → Envoy Cluster and ClusterLoadAssignment messages."""

from __future__ import annotations

import functools
from datetime import timedelta

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    HealthStatus,
    SocketAddress,
)
from envoy_data_plane.envoy.config.core.v3 import Locality as EnvoyLocality
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.endpoint.v3 import Endpoint as EnvoyEndpoint
from envoy_data_plane.envoy.type.v3 import Percent

from .. import ir, wire
from . import (
    circuit_breakers,
    discovery,
    locality,
    mtls,
    outlier_detection,
    telemetry,
    upstream_tls,
    warmup,
)
from .config_source import ads

_POLICY = {
    "ROUND_ROBIN": cluster.ClusterLbPolicy.ROUND_ROBIN,
    "LEAST_REQUEST": cluster.ClusterLbPolicy.LEAST_REQUEST,
    "RANDOM": cluster.ClusterLbPolicy.RANDOM,
    "RING_HASH": cluster.ClusterLbPolicy.RING_HASH,
    "MAGLEV": cluster.ClusterLbPolicy.MAGLEV,
}


# Envoy's default 50 % panic threshold spreads traffic over unready endpoints once most
# are unready; with few pods per service that is the common case, so, like Istio's
# default (outlierDetection.minHealthPercent 0), panic mode is off.
_NO_PANIC = wire.shared(cluster.ClusterCommonLbConfig(healthy_panic_threshold=Percent(value=0.0)))


def socket_address(address: str, port: int) -> Address:
    return Address(socket_address=SocketAddress(address=address, port_value=port))


def outbound_cluster(c: ir.Cluster, local: bool = False, mesh_tls: bool = False) -> cluster.Cluster:
    """`mesh_tls`: the proxy holds a workload certificate, so mesh mTLS applies."""
    out = cluster.Cluster(
        name=c.name,
        connect_timeout=c.policy.connect_timeout,
        common_lb_config=_NO_PANIC,
    )
    wire.attach(out, "metadata", _service_metadata(c.hostname, c.namespace))
    if c.policy.lb.policy == "PASSTHROUGH" or c.discovery == "original_dst":
        # No load balancing: the connection goes where the app sent it. Local mode has no
        # original destination address, so there the x-envoy-original-dst-host header
        # names it; with iptables capture a client must not choose by header.
        discovery.original_dst(out, local)
        upstream_tls.apply(out, c.policy.tls)
        return out
    circuit_breakers.apply(out, c.policy.connection_pool, c.protocol in ir.HTTP2_PROTOCOLS)
    outlier_detection.apply(out, c.policy.outlier)
    upstream_tls.apply(out, c.policy.tls)
    if mesh_tls:
        mtls.apply(out, c)
    if c.policy.locality is not None and c.policy.locality.distribute:
        panic = out.common_lb_config.healthy_panic_threshold if out.common_lb_config else None
        out.common_lb_config = cluster.ClusterCommonLbConfig(
            healthy_panic_threshold=panic,
            locality_weighted_lb_config=cluster.ClusterCommonLbConfigLocalityWeightedLbConfig(),
        )
    if c.discovery == "eds":
        out.type = cluster.ClusterDiscoveryType.EDS
        out.eds_cluster_config = cluster.ClusterEdsClusterConfig(
            eds_config=ads(), service_name=c.name
        )
    else:
        discovery.dns(out, c, load_assignment(c.name, c.endpoints))
    out.lb_policy = _POLICY[c.policy.lb.policy]
    if c.policy.lb.warmup is not None:
        warmup.apply(out, c.policy.lb.policy, c.policy.lb.warmup)
    if c.policy.lb.policy == "RING_HASH" and c.policy.lb.ring_size:
        out.ring_hash_lb_config = cluster.ClusterRingHashLbConfig(
            minimum_ring_size=c.policy.lb.ring_size
        )
    if c.policy.lb.policy == "MAGLEV" and c.policy.lb.table_size:
        out.maglev_lb_config = cluster.ClusterMaglevLbConfig(table_size=c.policy.lb.table_size)
    return out


# ClusterLoadAssignment is the most numerous resource (one per cluster) and the most
# deeply nested for what it says: it is written at the wire level, with the field
# numbers read from envoy-data-plane's classes. The golden tests decode it with them.
_n = wire.field_number
_CLA_NAME = _n(ClusterLoadAssignment, "cluster_name")
_CLA_ENDPOINTS = _n(ClusterLoadAssignment, "endpoints")
_LOCALITY = _n(LocalityLbEndpoints, "locality")
_LOCALITY_LB_ENDPOINTS = _n(LocalityLbEndpoints, "lb_endpoints")
_REGION = _n(EnvoyLocality, "region")
_ZONE = _n(EnvoyLocality, "zone")
_SUBZONE = _n(EnvoyLocality, "sub_zone")
_LB_WEIGHT = _n(LocalityLbEndpoints, "load_balancing_weight")
_PRIORITY = wire.tag(_n(LocalityLbEndpoints, "priority"), 0)
_UINT32_VALUE = wire.tag(1, 0)  # google.protobuf.UInt32Value.value
_LB_ENDPOINT = _n(LbEndpoint, "endpoint")
_LB_HEALTH = wire.tag(_n(LbEndpoint, "health_status"), 0)
_ENDPOINT_ADDRESS = _n(EnvoyEndpoint, "address")
_ADDRESS_SOCKET = _n(Address, "socket_address")
_SOCKET_ADDRESS = _n(SocketAddress, "address")
_SOCKET_PORT = wire.tag(_n(SocketAddress, "port_value"), 0)
_HEALTH = {True: wire.varint(HealthStatus.HEALTHY), False: wire.varint(HealthStatus.UNHEALTHY)}
_LB_METADATA = _n(LbEndpoint, "metadata")


@functools.lru_cache(maxsize=16384)  # subsets of one service share it
def _service_metadata(hostname: str, namespace: str) -> bytes:
    return telemetry.service_metadata(hostname, hostname.split(".")[0], namespace)


@functools.lru_cache(maxsize=16384)  # bounded: versions come and go under a long run
def _endpoint_metadata(mtls_match: bool, workload: ir.Workload | None) -> bytes:
    md = telemetry.endpoint_metadata(mtls_match, workload)
    return wire.length_delimited(_LB_METADATA, md) if md else b""


def _lb_endpoint(e: ir.Endpoint) -> bytes:
    socket = wire.length_delimited(_SOCKET_ADDRESS, e.address.encode())
    socket += _SOCKET_PORT + wire.varint(e.port)
    address = wire.length_delimited(_ADDRESS_SOCKET, socket)
    endpoint = wire.length_delimited(_ENDPOINT_ADDRESS, address)
    out = wire.length_delimited(_LB_ENDPOINT, endpoint) + _LB_HEALTH + _HEALTH[e.healthy]
    return out + _endpoint_metadata(e.mtls, e.workload)


def _locality(where: ir.Locality | None) -> bytes:
    if where is None:
        return b""
    fields = ((_REGION, where.region), (_ZONE, where.zone), (_SUBZONE, where.subzone))
    body = b"".join(wire.length_delimited(n, v.encode()) for n, v in fields if v)
    return wire.length_delimited(_LOCALITY, body)


def load_assignment(
    name: str,
    endpoints: tuple[ir.Endpoint, ...],
    lb: ir.LocalityLb | None = None,
    client: ir.Locality | None = None,
    client_values: tuple[str, ...] = (),
) -> bytes:
    """An encoded ClusterLoadAssignment: endpoints grouped by locality (first seen first);
    with locality load balancing, each group's priority or weight for a client in
    `client` (so it is shared by every proxy in that locality)."""
    keys = lb.failover_priority if lb is not None and not lb.distribute else ()
    groups: dict[tuple[ir.Locality | None, int], list[ir.Endpoint]] = {}
    for e in endpoints:
        by_labels = locality.label_priority(keys, client_values, e.failover) if keys else 0
        groups.setdefault((e.locality, by_labels), []).append(e)
    where_list = [where for where, _ in groups]
    prios: list[int] = [0] * len(where_list)
    weights: list[int] | None = None
    if keys:
        prios = locality.compact([p for _, p in groups])
    elif lb is not None:
        weights = locality.weights(lb, client, where_list) if lb.distribute else None
        if weights is None and not lb.distribute:
            prios = locality.priorities(lb, client, where_list)
    out = wire.length_delimited(_CLA_NAME, name.encode())
    for i, ((where, _), members) in enumerate(groups.items()):
        if weights is not None and weights[i] == 0:
            continue  # a locality `distribute` sends nothing to
        hosts = b"".join(
            wire.length_delimited(_LOCALITY_LB_ENDPOINTS, _lb_endpoint(e)) for e in members
        )
        extra = b""
        if weights is not None:
            extra += wire.length_delimited(_LB_WEIGHT, _UINT32_VALUE + wire.varint(weights[i]))
        if prios[i]:
            extra += _PRIORITY + wire.varint(prios[i])
        out += wire.length_delimited(_CLA_ENDPOINTS, _locality(where) + hosts + extra)
    return out


def single_host_cluster(
    name: str,
    host: str,
    port: int,
    kind: cluster.ClusterDiscoveryType = cluster.ClusterDiscoveryType.STATIC,
    connect_timeout: timedelta = timedelta(seconds=10),
) -> cluster.Cluster:
    """A cluster of one address (or, with LOGICAL_DNS, one name) given inline."""
    return cluster.Cluster(
        name=name,
        type=kind,
        connect_timeout=connect_timeout,
        load_assignment=ClusterLoadAssignment.parse(
            load_assignment(name, (ir.Endpoint(host, port),))
        ),
    )


def inbound_cluster(ip: str, port: int, http2: bool = False) -> cluster.Cluster:
    """The app's port; `http2` when the service port reaching it is HTTP/2 or gRPC."""
    out = single_host_cluster(ir.inbound_cluster_name(port), ip, port)
    if http2:
        out.typed_extension_protocol_options = circuit_breakers.http2_only()
    return out

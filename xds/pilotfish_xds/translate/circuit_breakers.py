"""Connection pools (Istio's `connectionPool`, and `retryBudget`): Envoy's circuit
breakers, keepalive and upstream HTTP options on a cluster.

As Istio, every threshold not set is effectively unlimited (Envoy's own defaults,
1024 connections and requests, would shed load nobody asked to shed)."""

from __future__ import annotations

import functools
from dataclasses import replace

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.config.core.v3 import (
    Http1ProtocolOptions,
    Http2ProtocolOptions,
    KeepaliveSettings,
    TcpKeepalive,
)
from envoy_data_plane.envoy.config.core.v3 import HttpProtocolOptions as CommonHttpOptions
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
    HttpProtocolOptionsUseDownstreamHttpConfig,
)
from envoy_data_plane.envoy.type.v3 import Percent
from envoy_data_plane.google.protobuf import Any

from .. import ir, wire

UNLIMITED = 2**32 - 1
HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_HTTP1 = Http1ProtocolOptions()


def apply(out: cluster.Cluster, pool: ir.ConnectionPool | None, http2: bool = False) -> None:
    """`http2`: the service port speaks HTTP/2 (or gRPC), so the upstream does too."""
    pool = pool or ir.ConnectionPool()
    out.circuit_breakers = _breakers(pool)
    if pool.keepalive is not None:
        out.upstream_connection_options = _keepalive(pool.keepalive)
    if http2 and not pool.http2 and not pool.use_client_protocol:
        pool = replace(pool, http2=True)
    options = _http_options(pool)
    if options is not None:
        out.typed_extension_protocol_options = {HTTP_OPTIONS: options}


@wire.built_once(1 << 10)
def _breakers(pool: ir.ConnectionPool) -> cluster.CircuitBreakers:
    def limit(value: int | None) -> int:
        return UNLIMITED if value is None else value

    budget = None
    if pool.retry_budget is not None:
        percent, concurrency = pool.retry_budget
        budget = cluster.CircuitBreakersThresholdsRetryBudget(
            budget_percent=Percent(value=percent), min_retry_concurrency=concurrency
        )
    return cluster.CircuitBreakers(
        thresholds=[
            cluster.CircuitBreakersThresholds(
                max_connections=limit(pool.max_connections),
                max_pending_requests=limit(pool.max_pending_requests),
                max_requests=limit(pool.max_requests),
                max_retries=limit(pool.max_retries),
                retry_budget=budget,
                track_remaining=True,
            )
        ]
    )


def http2_only() -> dict[str, Any]:
    """typed_extension_protocol_options of a cluster that speaks HTTP/2 upstream."""
    options = _http_options(ir.ConnectionPool(http2=True))
    assert options is not None
    return {HTTP_OPTIONS: options}


@wire.built_once(1 << 10)
def _keepalive(k: ir.TcpKeepalive) -> cluster.UpstreamConnectionOptions:
    return cluster.UpstreamConnectionOptions(
        tcp_keepalive=TcpKeepalive(
            keepalive_probes=k.probes,
            keepalive_time=int(k.time.total_seconds()) if k.time else None,
            keepalive_interval=int(k.interval.total_seconds()) if k.interval else None,
        )
    )


@functools.lru_cache(maxsize=1 << 10)
def _http_options(pool: ir.ConnectionPool) -> Any | None:
    common = None
    if pool.idle_timeout or pool.max_connection_duration or pool.max_requests_per_connection:
        common = CommonHttpOptions(
            idle_timeout=pool.idle_timeout,
            max_connection_duration=pool.max_connection_duration,
            max_requests_per_connection=pool.max_requests_per_connection,
        )
    http2 = Http2ProtocolOptions(max_concurrent_streams=pool.max_concurrent_streams)
    if pool.h2_keepalive is not None:
        interval, timeout = pool.h2_keepalive
        http2.connection_keepalive = KeepaliveSettings(interval=interval, timeout=timeout)
    options = HttpProtocolOptions(common_http_protocol_options=common)
    if pool.use_client_protocol:
        options.use_downstream_protocol_config = HttpProtocolOptionsUseDownstreamHttpConfig(
            http2_protocol_options=http2
        )
    elif pool.http2:
        options.explicit_http_config = HttpProtocolOptionsExplicitHttpConfig(
            http2_protocol_options=http2
        )
    elif common is None:
        return None
    else:
        options.explicit_http_config = HttpProtocolOptionsExplicitHttpConfig(
            http_protocol_options=_HTTP1
        )
    return Any.pack(options)

"""What a proxy's listeners report (standard metrics, access logs, traces) for one side
of the proxy, from its resolved Telemetry: the one place the layouts ask."""

from __future__ import annotations

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManagerTracing,
)

from .. import ir
from . import access_log, telemetry, tracing


def http(
    t: ir.SideTelemetry, outbound: bool, mutual_tls: bool = False
) -> tuple[tuple[AccessLog, ...], HttpConnectionManagerTracing | None]:
    """An HTTP connection manager's access loggers (metrics first) and tracing.
    `outbound`: the client side (reporter=source); `mutual_tls`: the server side's
    connection is mutual TLS."""
    logs: tuple[AccessLog, ...] = ()
    if t.metrics:
        stats = (
            telemetry.source_log(t.overrides)
            if outbound
            else telemetry.destination_log(mutual_tls, t.overrides)
        )
        logs = (stats,) if stats is not None else ()
    trace = tracing.hcm_tracing(t.tracing) if t.tracing is not None else None
    return (*logs, *access_log.http_logs(t.access_logs)), trace


def tcp(
    t: ir.SideTelemetry,
    outbound: bool,
    mutual_tls: bool = False,
    service: tuple[str, str, str] | tuple[()] = (),
) -> tuple[AccessLog, ...]:
    """A TCP proxy's access loggers (metrics first). `service`: on the server side, the
    (hostname, name, namespace) the connection was for, when the chain knows it."""
    logs: tuple[AccessLog, ...] = ()
    if t.metrics:
        logs = (
            telemetry.tcp_source_logs(t.overrides)
            if outbound
            else telemetry.tcp_destination_logs(mutual_tls, t.overrides, service)
        )
    return (*logs, *access_log.tcp_logs(t.access_logs))

"""Access logs: every HTTP request (and TCP connection) a proxy handles, one line each,
in Istio's default text format or its JSON keys, to a file or the proxy's stdout (mesh
config `accessLogFile`, `accessLogEncoding`, `accessLogFormat`; envoyFileAccessLog
providers) or to an OpenTelemetry collector (envoyOtelAls providers), as Telemetry
`accessLogging` selects, optionally filtered by a CEL expression."""

from __future__ import annotations

import functools
import json

from envoy_data_plane.envoy.config.accesslog.v3 import (
    AccessLog,
    AccessLogFilter,
    AndFilter,
    ExtensionFilter,
    LogTypeFilter,
)
from envoy_data_plane.envoy.config.core.v3 import (
    ApiVersion,
    DataSource,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    SubstitutionFormatString,
)
from envoy_data_plane.envoy.data.accesslog.v3 import AccessLogType
from envoy_data_plane.envoy.extensions.access_loggers.file.v3 import FileAccessLog
from envoy_data_plane.envoy.extensions.access_loggers.filters.cel.v3 import ExpressionFilter
from envoy_data_plane.envoy.extensions.access_loggers.grpc.v3 import CommonGrpcAccessLogConfig
from envoy_data_plane.envoy.extensions.access_loggers.open_telemetry.v3 import (
    OpenTelemetryAccessLogConfig,
)
from envoy_data_plane.google.protobuf import Any, Struct, Value
from envoy_data_plane.opentelemetry.proto.common.v1 import AnyValue, KeyValue, KeyValueList

from .. import ir, wire

# Istio's default text line: the request, its outcome, timing, peers and route.
DEFAULT_TEXT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% "
    '%CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" '
    "%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "
    '"%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" '
    '"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)
# Istio's default JSON keys, the same facts.
DEFAULT_JSON = {
    "start_time": "%START_TIME%",
    "route_name": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}


def _format(spec: ir.AccessLog) -> SubstitutionFormatString:
    if spec.encoding == "JSON":
        fields = json.loads(spec.format) if spec.format else DEFAULT_JSON
        struct = Struct(fields={k: Value(string_value=v) for k, v in fields.items()})
        return SubstitutionFormatString(json_format=struct)
    text = spec.format or DEFAULT_TEXT
    text = text if text.endswith("\n") else text + "\n"
    return SubstitutionFormatString(text_format_source=DataSource(inline_string=text))


def _sink(spec: ir.AccessLog) -> tuple[str, Any]:
    """The logger's name and config: a file, or an OpenTelemetry logs service (the
    record's body is the text line, its attributes the provider's labels)."""
    if spec.otel is None:
        return "envoy.access_loggers.file", Any.pack(
            FileAccessLog(path=spec.path, log_format=_format(spec))
        )
    collector = spec.otel
    config = OpenTelemetryAccessLogConfig(
        common_config=CommonGrpcAccessLogConfig(
            log_name=spec.log_name,
            grpc_service=GrpcService(
                envoy_grpc=GrpcServiceEnvoyGrpc(
                    cluster_name=collector.cluster, authority=collector.authority
                )
            ),
            transport_api_version=ApiVersion.V3,
        ),
        body=AnyValue(string_value=(spec.format or DEFAULT_TEXT).rstrip("\n")),
        attributes=KeyValueList(
            values=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in spec.labels]
        ),
    )
    return "envoy.access_loggers.open_telemetry", Any.pack(config)


def _filters(spec: ir.AccessLog, tcp: bool) -> AccessLogFilter | None:
    found = []
    if tcp:  # once per connection, at its end (the TCP proxy also logs at connect)
        found.append(
            AccessLogFilter(log_type_filter=LogTypeFilter(types=[AccessLogType.TcpConnectionEnd]))
        )
    if spec.filter:  # Telemetry's `filter.expression`, a CEL expression
        cel = ExpressionFilter(expression=spec.filter)
        found.append(
            AccessLogFilter(
                extension_filter=ExtensionFilter(
                    name="envoy.access_loggers.extension_filters.cel",
                    typed_config=Any.pack(cel),
                )
            )
        )
    if len(found) > 1:
        return AccessLogFilter(and_filter=AndFilter(filters=found))
    return found[0] if found else None


@functools.cache
def _log(spec: ir.AccessLog, tcp: bool) -> AccessLog:
    name, config = _sink(spec)
    log = AccessLog(name=name, typed_config=config)
    if (found := _filters(spec, tcp)) is not None:
        log.filter = found
    return wire.shared(log)  # shared by every proxy with the same settings


def http_logs(specs: tuple[ir.AccessLog, ...]) -> tuple[AccessLog, ...]:
    """An HTTP connection manager's access logs: one line per request."""
    return tuple(_log(spec, False) for spec in specs)


def tcp_logs(specs: tuple[ir.AccessLog, ...]) -> tuple[AccessLog, ...]:
    """A TCP proxy's access logs: one line per connection, at its end, in the same
    format (HTTP-only fields are `-`)."""
    return tuple(_log(spec, True) for spec in specs)

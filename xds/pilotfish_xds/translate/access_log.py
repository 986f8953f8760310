"""Access logs: every HTTP request (and TCP connection) a proxy handles, one line each,
in Istio's default text format or its JSON keys, to a file or the proxy's stdout (mesh
config `accessLogFile`, `accessLogEncoding`, `accessLogFormat`)."""

from __future__ import annotations

import functools
import json

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog, AccessLogFilter, LogTypeFilter
from envoy_data_plane.envoy.config.core.v3 import DataSource, SubstitutionFormatString
from envoy_data_plane.envoy.data.accesslog.v3 import AccessLogType
from envoy_data_plane.envoy.extensions.access_loggers.file.v3 import FileAccessLog
from envoy_data_plane.google.protobuf import Any, Struct, Value

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


@functools.cache
def file_log(spec: ir.AccessLog) -> AccessLog:
    """The access log of a proxy's connection managers (shared by every proxy with the
    same settings)."""
    if spec.encoding == "JSON":
        fields = json.loads(spec.format) if spec.format else DEFAULT_JSON
        struct = Struct(fields={k: Value(string_value=v) for k, v in fields.items()})
        log_format = SubstitutionFormatString(json_format=struct)
    else:
        text = spec.format or DEFAULT_TEXT
        text = text if text.endswith("\n") else text + "\n"
        log_format = SubstitutionFormatString(text_format_source=DataSource(inline_string=text))
    config = FileAccessLog(path=spec.path, log_format=log_format)
    return wire.shared(AccessLog(name="envoy.access_loggers.file", typed_config=Any.pack(config)))


def http_logs(spec: ir.AccessLog | None) -> tuple[AccessLog, ...]:
    return (file_log(spec),) if spec is not None else ()


@functools.cache
def _tcp_log(spec: ir.AccessLog) -> AccessLog:
    # Once per connection, at its end (the TCP proxy also logs at connect, for metrics).
    log = file_log(spec)
    return wire.shared(
        AccessLog(
            name=log.name,
            filter=AccessLogFilter(
                log_type_filter=LogTypeFilter(types=[AccessLogType.TcpConnectionEnd])
            ),
            typed_config=log.typed_config,
        )
    )


def tcp_logs(spec: ir.AccessLog | None) -> tuple[AccessLog, ...]:
    """The access log of a proxy's TCP proxies: one line per connection, at its end,
    in the same format (HTTP-only fields are `-`)."""
    return (_tcp_log(spec),) if spec is not None else ()

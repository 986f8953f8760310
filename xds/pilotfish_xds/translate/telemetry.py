"""Istio's standard metrics from stock Envoy: the stats access logger on every HTTP
connection manager counts each request with Istio's labels.

Nothing here is per proxy, so listeners and routes stay shared: what a proxy knows of
itself is in its node metadata (the bootstrap: WORKLOAD_NAME, APP, ...) and read with
CEL; what it knows of the other side comes from the cluster and endpoint metadata
(`pilotfish` namespace) when it is the client (reporter=source), and from the client
sidecar's peer headers (turned into dynamic metadata, then removed, before the app
sees them) when it is the server (reporter=destination). Envoy exports them as
`envoy_istio_<name>`; the chart's scrape configuration renames them `istio_<name>`.

Cardinality: one series per distinct label set, i.e. per (peer workload, response
code, response flags, gRPC status, protocol) of each proxy's actual traffic.
"""

from __future__ import annotations

import functools

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog, AccessLogFilter, LogTypeFilter
from envoy_data_plane.envoy.config.core.v3 import (
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
)
from envoy_data_plane.envoy.data.accesslog.v3 import AccessLogType
from envoy_data_plane.envoy.extensions.access_loggers.stats.v3 import (
    Config as StatsConfig,
)
from envoy_data_plane.envoy.extensions.access_loggers.stats.v3 import (
    ConfigCounter,
    ConfigHistogram,
    ConfigHistogramUnit,
    ConfigStat,
    ConfigTag,
)
from envoy_data_plane.envoy.extensions.filters.http.header_to_metadata.v3 import (
    Config as HeaderToMetadata,
)
from envoy_data_plane.envoy.extensions.filters.http.header_to_metadata.v3 import (
    ConfigKeyValuePair,
    ConfigRule,
    ConfigValueType,
)
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)
from envoy_data_plane.envoy.type.v3 import Scope
from envoy_data_plane.google.protobuf import Any

from .. import ir, wire
from . import mtls

PREFIX = "istio"
METADATA = "pilotfish"
"""The metadata namespace of clusters, endpoints and routes that metrics read."""
PEER = "pilotfish.peer"
"""Where the server's sidecar keeps what the client's sidecar said about itself."""
CLUSTER_ID = "Kubernetes"
"""Istio's default cluster name (source_cluster, destination_cluster)."""
UNKNOWN = "unknown"

# (peer header / metadata key, node metadata key), Istio's workload labels.
_SELF = (
    ("workload", "WORKLOAD_NAME"),
    ("namespace", "NAMESPACE"),
    ("app", "APP"),
    ("version", "VERSION"),
    ("canonical_service", "CANONICAL_SERVICE"),
    ("canonical_revision", "CANONICAL_REVISION"),
)


def peer_header(key: str) -> str:
    return f"x-pilotfish-peer-{key.replace('_', '-')}"


def _cel(expr: str) -> str:
    return f"%CEL({expr})%"


def _node(key: str) -> str:
    return _cel(f"xds.node.metadata.{key}")


def _or_unknown(where: str, key: str) -> str:
    base = f"{where}.filter_metadata"
    return _cel(f"has({base}.{METADATA}) ? {base}.{METADATA}.{key} : '{UNKNOWN}'")


def _peer(key: str) -> str:
    return f"%DYNAMIC_METADATA({PEER}:{key})%"


_PROTOCOL = _cel(
    "'content-type' in request.headers && "
    "request.headers['content-type'].startsWith('application/grpc') ? 'grpc' : 'http'"
)


def _labels(
    reporter: str, source: dict[str, str], dest: dict[str, str], security: str, http: bool = True
) -> list[ConfigTag]:
    """Istio's label set, in Istio's order (TCP: no response or gRPC code)."""
    pairs = [
        ("reporter", reporter),
        ("source_workload", source["workload"]),
        ("source_workload_namespace", source["namespace"]),
        ("source_principal", source["principal"]),
        ("source_app", source["app"]),
        ("source_version", source["version"]),
        ("source_cluster", CLUSTER_ID),
        ("destination_workload", dest["workload"]),
        ("destination_workload_namespace", dest["namespace"]),
        ("destination_principal", dest["principal"]),
        ("destination_app", dest["app"]),
        ("destination_version", dest["version"]),
        ("destination_service", dest["service"]),
        ("destination_service_name", dest["service_name"]),
        ("destination_service_namespace", dest["service_namespace"]),
        ("destination_cluster", CLUSTER_ID),
        ("request_protocol", _PROTOCOL if http else "tcp"),
        ("response_code", "%RESPONSE_CODE%" if http else ""),
        ("grpc_response_status", "%GRPC_STATUS_NUMBER%" if http else ""),
        ("response_flags", "%RESPONSE_FLAGS%"),
        ("connection_security_policy", security),
        ("source_canonical_service", source["canonical_service"]),
        ("source_canonical_revision", source["canonical_revision"]),
        ("destination_canonical_service", dest["canonical_service"]),
        ("destination_canonical_revision", dest["canonical_revision"]),
    ]
    return [ConfigTag(name=n, value_format=v) for n, v in pairs if v or http]


Overrides = tuple[ir.MetricOverride, ...]

# Istio's metric names (Telemetry `overrides.match.metric`) -> ours.
HTTP_METRICS = {
    "REQUEST_COUNT": "requests_total",
    "REQUEST_DURATION": "request_duration_milliseconds",
    "REQUEST_SIZE": "request_bytes",
    "RESPONSE_SIZE": "response_bytes",
}
TCP_METRICS = {
    "TCP_OPENED_CONNECTIONS": "tcp_connections_opened_total",
    "TCP_CLOSED_CONNECTIONS": "tcp_connections_closed_total",
    "TCP_SENT_BYTES": "tcp_sent_bytes_total",
    "TCP_RECEIVED_BYTES": "tcp_received_bytes_total",
}


def _stat(metric: str, tags: list[ConfigTag], overrides: Overrides) -> ConfigStat | None:
    """`metric`'s stat with Telemetry's overrides applied in order (None: disabled).
    An override's tag value is a CEL expression, as in Istio."""
    values = {t.name: t.value_format for t in tags}
    disabled = False
    for o in overrides:
        if o.metric not in ("ALL_METRICS", metric):
            continue
        if o.disabled is not None:
            disabled = o.disabled
        for tag, expr in o.tags:
            if expr is None:
                values.pop(tag, None)
            else:
                values[tag] = _cel(expr)
    if disabled:
        return None
    ours = HTTP_METRICS.get(metric) or TCP_METRICS[metric]
    return ConfigStat(
        name=ours, tags=[ConfigTag(name=n, value_format=v) for n, v in values.items()]
    )


def _http_log(tags: list[ConfigTag], overrides: Overrides = ()) -> AccessLog | None:
    stats = {m: _stat(m, tags, overrides) for m in HTTP_METRICS}
    counters = []
    if (count := stats["REQUEST_COUNT"]) is not None:
        counters.append(ConfigCounter(stat=count, value_fixed=1))
    histograms = [
        ConfigHistogram(stat=stat, unit=unit, value_format=value)
        for metric, unit, value in (
            ("REQUEST_DURATION", ConfigHistogramUnit.Milliseconds, "%DURATION%"),
            ("REQUEST_SIZE", ConfigHistogramUnit.Bytes, "%BYTES_RECEIVED%"),
            ("RESPONSE_SIZE", ConfigHistogramUnit.Bytes, "%BYTES_SENT%"),
        )
        if (stat := stats[metric]) is not None
    ]
    if not counters and not histograms:
        return None
    config = StatsConfig(stats_scope=Scope(prefix=PREFIX), counters=counters, histograms=histograms)
    return AccessLog(name="envoy.access_loggers.stats", typed_config=Any.pack(config))


def _self() -> dict[str, str]:
    out = {key: _node(node_key) for key, node_key in _SELF}
    out["principal"] = _node("PRINCIPAL")
    return out


def _server_side() -> dict[str, str]:
    """The destination as a client sees it: the cluster (the service) and the chosen
    endpoint (the workload)."""
    host = "xds.upstream_host_metadata"
    dest = {key: _or_unknown(host, key) for key, _ in _SELF}
    dest["principal"] = _or_unknown(host, "principal")
    cluster = "xds.cluster_metadata"
    dest["service"] = _or_unknown(cluster, "service")
    dest["service_name"] = _or_unknown(cluster, "service_name")
    dest["service_namespace"] = _or_unknown(cluster, "service_namespace")
    return dest


@functools.cache
def source_log(overrides: Overrides = ()) -> AccessLog | None:
    """For a client's HCM (reporter=source): itself from its node, the destination from
    the cluster and endpoint metadata. None: every HTTP metric is disabled."""
    log = _http_log(_labels("source", _self(), _server_side(), UNKNOWN), overrides)
    return wire.shared(log) if log is not None else None


@functools.cache
def destination_log(mutual_tls: bool, overrides: Overrides = ()) -> AccessLog | None:
    """For a server's HCM (reporter=destination): the source from the peer's headers
    (and its certificate), itself from its node, the service from the route."""
    source = {key: _peer(key) for key, _ in _SELF}
    source["principal"] = "%DOWNSTREAM_PEER_URI_SAN%" if mutual_tls else UNKNOWN
    dest = _self()
    route = "xds.route_metadata"
    dest["service"] = _or_unknown(route, "service")
    dest["service_name"] = _or_unknown(route, "service_name")
    dest["service_namespace"] = _or_unknown(route, "service_namespace")
    security = "mutual_tls" if mutual_tls else "none"
    log = _http_log(_labels("destination", source, dest, security), overrides)
    return wire.shared(log) if log is not None else None


def _tcp_logs(tags: list[ConfigTag], overrides: Overrides) -> tuple[AccessLog, ...]:
    """Opened when the upstream connects; closed, and the bytes each way, when the
    connection ends (so a long-lived connection's bytes show at its close)."""

    def counters(*metrics: tuple[str, str | None]) -> list[ConfigCounter]:
        out = []
        for metric, value in metrics:
            stat = _stat(metric, tags, overrides)
            if stat is None:
                continue
            if value is None:
                out.append(ConfigCounter(stat=stat, value_fixed=1))
            else:
                out.append(ConfigCounter(stat=stat, value_format=value))
        return out

    def log(event: AccessLogType, counters: list[ConfigCounter]) -> AccessLog:
        config = StatsConfig(stats_scope=Scope(prefix=PREFIX), counters=counters)
        return AccessLog(
            name="envoy.access_loggers.stats",
            filter=AccessLogFilter(log_type_filter=LogTypeFilter(types=[event])),
            typed_config=Any.pack(config),
        )

    opened = counters(("TCP_OPENED_CONNECTIONS", None))
    closed = counters(
        ("TCP_CLOSED_CONNECTIONS", None),
        ("TCP_SENT_BYTES", "%BYTES_SENT%"),
        ("TCP_RECEIVED_BYTES", "%BYTES_RECEIVED%"),
    )
    return tuple(
        log(event, found)
        for event, found in (
            (AccessLogType.TcpUpstreamConnected, opened),
            (AccessLogType.TcpConnectionEnd, closed),
        )
        if found
    )


@functools.cache
def tcp_source_logs(overrides: Overrides = ()) -> tuple[AccessLog, ...]:
    """For a client's TCP proxy (reporter=source)."""
    tags = _labels("source", _self(), _server_side(), UNKNOWN, http=False)
    return tuple(wire.shared(log) for log in _tcp_logs(tags, overrides))


@functools.cache
def tcp_destination_logs(
    mutual_tls: bool,
    overrides: Overrides = (),
    service: tuple[str, str, str] | tuple[()] = (),
) -> tuple[AccessLog, ...]:
    """For a server's TCP proxy (reporter=destination). No headers on TCP: of the
    client, only its certificate's identity is known (Istio exchanges metadata in
    ALPN, which stock Envoy cannot)."""
    source = {key: UNKNOWN for key, _ in _SELF}
    source["principal"] = "%DOWNSTREAM_PEER_URI_SAN%" if mutual_tls else UNKNOWN
    host, name, namespace = service or (UNKNOWN, UNKNOWN, UNKNOWN)
    dest = {**_self(), "service": host, "service_name": name, "service_namespace": namespace}
    security = "mutual_tls" if mutual_tls else "none"
    tags = _labels("destination", source, dest, security, http=False)
    return tuple(wire.shared(log) for log in _tcp_logs(tags, overrides))


@functools.cache
def peer_filter() -> HttpFilter:
    """First on a server's HCM: the client sidecar's peer headers become dynamic
    metadata (`unknown` when absent: a client without a sidecar) and are removed."""
    rules = [
        ConfigRule(
            header=peer_header(key),
            on_header_present=ConfigKeyValuePair(
                metadata_namespace=PEER, key=key, type=ConfigValueType.STRING
            ),
            on_header_missing=ConfigKeyValuePair(
                metadata_namespace=PEER, key=key, value=UNKNOWN, type=ConfigValueType.STRING
            ),
            remove=True,
        )
        for key, _ in _SELF
    ]
    config = HeaderToMetadata(request_rules=rules)
    return wire.shared(
        HttpFilter(name="envoy.filters.http.header_to_metadata", typed_config=Any.pack(config))
    )


@functools.cache
def peer_headers() -> tuple[HeaderValueOption, ...]:
    """What a client's sidecar tells the server's about itself (on mesh virtual hosts
    only: nothing about the pod leaves the mesh)."""
    return tuple(
        wire.shared(  # on every mesh virtual host: encoded once
            HeaderValueOption(
                header=HeaderValue(key=peer_header(key), value=_node(node_key)),
                append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        )
        for key, node_key in _SELF
    )


def node_metadata(workload: ir.Workload | None) -> dict[str, str]:
    """The bootstrap's node metadata the labels read (`unknown` for what is unknown)."""
    w = workload or ir.Workload(UNKNOWN, UNKNOWN)
    return {
        "WORKLOAD_NAME": w.name,
        "NAMESPACE": w.namespace,
        "APP": w.app,
        "VERSION": w.version,
        "CANONICAL_SERVICE": w.canonical_service,
        "CANONICAL_REVISION": w.canonical_revision,
        "PRINCIPAL": w.principal,
        "CLUSTER_ID": CLUSTER_ID,
    }


def service_metadata(host: str, name: str, namespace: str) -> bytes:
    """A cluster's or inbound route's service, for destination_service* (an encoded
    Metadata: see `wire.attach`)."""
    fields = (("service", host), ("service_name", name), ("service_namespace", namespace))
    return _metadata(((METADATA, _struct(fields)),))


def endpoint_metadata(mtls_match: bool, workload: ir.Workload | None) -> bytes:
    """An endpoint's encoded Metadata: its transport-socket match (auto mTLS) and the
    workload behind it (clusters.py caches the result per workload)."""
    namespaces: list[tuple[str, bytes]] = []
    if mtls_match:
        namespaces.append((mtls.MATCH_KEY, wire.encode(mtls.ISTIO_MODE)))
    if workload is not None:
        fields = (
            ("workload", workload.name),
            ("namespace", workload.namespace),
            ("app", workload.app),
            ("version", workload.version),
            ("canonical_service", workload.canonical_service),
            ("canonical_revision", workload.canonical_revision),
            ("principal", workload.principal),
        )
        namespaces.append((METADATA, _struct(fields)))
    return _metadata(tuple(namespaces)) if namespaces else b""


# Metadata and Struct written at the wire level: building them as messages costs
# ~100 us each, and every cluster and endpoint has one (10,000 services: seconds).
def _entry(key: str, value: bytes) -> bytes:
    """One map entry (key 1, value 2) of a map field numbered 1."""
    return wire.length_delimited(1, wire.length_delimited(1, key.encode()) + value)


def _struct(fields: tuple[tuple[str, str], ...]) -> bytes:
    """A google.protobuf.Struct of string values."""
    return b"".join(_string_field(k, v) for k, v in fields)


@functools.lru_cache(maxsize=65536)  # namespaces, apps, versions repeat across endpoints
def _string_field(key: str, value: str) -> bytes:
    """One Struct entry whose Value is a string (Value.string_value is field 3)."""
    return _entry(key, wire.length_delimited(2, wire.length_delimited(3, value.encode())))


def _metadata(namespaces: tuple[tuple[str, bytes], ...]) -> bytes:
    """An envoy.config.core.v3.Metadata with filter_metadata (field 1) entries."""
    return b"".join(_entry(ns, wire.length_delimited(2, struct)) for ns, struct in namespaces)

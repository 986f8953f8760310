"""Tracing: Envoy's Zipkin (B3, optionally W3C too) and OpenTelemetry (W3C) tracers
on a proxy's HTTP connection managers, from Istio's Telemetry `tracing` and the mesh
config's tracing providers.

The client side's span is the parent of the server side's: each sidecar reports its
own span (Zipkin's shared span context off) and passes its span id on in the trace
headers, so one request through two sidecars is one trace of two spans. The listener's
traffic direction makes the span a client (outbound) or server (inbound) span.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from envoy_data_plane.envoy.config.core.v3 import (
    GrpcService,
    GrpcServiceEnvoyGrpc,
    HeaderValue,
    HeaderValueOption,
    HttpService,
    HttpUri,
)
from envoy_data_plane.envoy.config.trace.v3 import (
    OpenTelemetryConfig,
    TracingHttp,
    ZipkinConfig,
    ZipkinConfigCollectorEndpointVersion,
    ZipkinConfigTraceContextOption,
)
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManagerTracing,
)
from envoy_data_plane.envoy.type.tracing.v3 import (
    CustomTag,
    CustomTagEnvironment,
    CustomTagHeader,
    CustomTagLiteral,
)
from envoy_data_plane.envoy.type.v3 import Percent
from envoy_data_plane.google.protobuf import Any

from .. import ir, wire

ZIPKIN_PATH = "/api/v2/spans"
EXPORT_TIMEOUT = timedelta(seconds=3)
"""OTLP/HTTP export timeout where the provider sets none (Envoy requires one)."""


def _provider(p: ir.TracingProvider) -> TracingHttp:
    c = p.collector
    if p.kind == "zipkin":
        option = ZipkinConfigTraceContextOption
        zipkin = ZipkinConfig(
            collector_cluster=c.cluster,
            collector_endpoint=p.path or ZIPKIN_PATH,
            collector_endpoint_version=ZipkinConfigCollectorEndpointVersion.HTTP_JSON,
            collector_hostname=c.authority.rsplit(":", 1)[0],
            trace_id_128bit=True,
            shared_span_context=False,
            trace_context_option=option.USE_B3_WITH_W3C_PROPAGATION if p.w3c else option.USE_B3,
        )
        return TracingHttp(name="envoy.tracers.zipkin", typed_config=Any.pack(zipkin))
    otel = OpenTelemetryConfig(service_name=p.service_name)
    if p.path:
        otel.http_service = HttpService(
            http_uri=HttpUri(
                uri=f"http://{c.authority}{p.path}",
                cluster=c.cluster,
                timeout=p.timeout or EXPORT_TIMEOUT,
            ),
            request_headers_to_add=[
                HeaderValueOption(header=HeaderValue(key=k, value=v)) for k, v in p.headers
            ],
        )
    else:
        otel.grpc_service = GrpcService(
            envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=c.cluster, authority=c.authority),
            timeout=p.timeout,
        )
    return TracingHttp(name="envoy.tracers.opentelemetry", typed_config=Any.pack(otel))


def _tag(t: ir.CustomTag) -> CustomTag:
    if t.kind == "literal":
        return CustomTag(tag=t.tag, literal=CustomTagLiteral(value=t.value))
    if t.kind == "formatter":
        return CustomTag(tag=t.tag, value=t.value)
    if t.kind == "environment":
        return CustomTag(
            tag=t.tag, environment=CustomTagEnvironment(name=t.value, default_value=t.default)
        )
    return CustomTag(
        tag=t.tag, request_header=CustomTagHeader(name=t.value, default_value=t.default)
    )


@functools.cache
def hcm_tracing(t: ir.Tracing) -> HttpConnectionManagerTracing:
    """An HTTP connection manager's tracing (shared by every proxy with the same)."""
    config = HttpConnectionManagerTracing(
        random_sampling=Percent(value=t.sampling),
        custom_tags=[_tag(tag) for tag in t.custom_tags],
        no_context_propagation=not t.propagate,
    )
    if t.provider is not None:
        config.provider = _provider(t.provider)
        config.max_path_tag_length = t.provider.max_tag_length
    return wire.shared(config)

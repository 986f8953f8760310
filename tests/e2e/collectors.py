"""Telemetry receivers for end-to-end tests, as a tracing or logging backend would
run them: a Zipkin collector (JSON v2 spans over HTTP) and an OpenTelemetry collector
(OTLP traces and logs over gRPC, traces over HTTP too), keeping what they receive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass
class Span:
    """One span, whichever protocol brought it (ids as lowercase hex)."""

    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    """CLIENT or SERVER."""
    service: str
    tags: dict[str, str]


@dataclass
class Received:
    spans: list[Span] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    """OTLP log records: body, attributes, and the resource's attributes."""

    async def wait(self, what: Callable[[Received], bool]) -> None:
        """Until `what` holds (Envoy batches: Zipkin flushes every 5 s, OTLP every 1 s)."""
        for _ in range(600):
            if what(self):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"not received in 60 s: {self}")


def _zipkin_span(s: dict[str, Any]) -> Span:
    return Span(
        trace_id=s["traceId"],
        span_id=s["id"],
        parent_id=s.get("parentId", ""),
        kind=s.get("kind", ""),
        service=s.get("localEndpoint", {}).get("serviceName", ""),
        tags=s.get("tags", {}),
    )


@contextlib.asynccontextmanager
async def zipkin(host: str, port: int) -> AsyncIterator[Received]:
    received = Received()

    async def spans(request: web.Request) -> web.Response:
        received.spans += [_zipkin_span(s) for s in await request.json()]
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/api/v2/spans", spans)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        yield received
    finally:
        await runner.cleanup()


_KINDS = {2: "SERVER", 3: "CLIENT"}


def _otlp_spans(request: trace_service_pb2.ExportTraceServiceRequest) -> list[Span]:
    out = []
    for rs in request.resource_spans:
        service = next(
            (a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), ""
        )
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        kind=_KINDS.get(s.kind, str(s.kind)),
                        service=service,
                        tags={a.key: a.value.string_value for a in s.attributes},
                    )
                )
    return out


@contextlib.asynccontextmanager
async def otlp(host: str, grpc_port: int, http_port: int) -> AsyncIterator[Received]:
    """OTLP/gRPC traces and logs on `grpc_port`, OTLP/HTTP traces on `http_port`."""
    received = Received()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        async def Export(
            self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
        ) -> trace_service_pb2.ExportTraceServiceResponse:
            received.spans += _otlp_spans(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        async def Export(
            self, request: logs_service_pb2.ExportLogsServiceRequest, context: Any
        ) -> logs_service_pb2.ExportLogsServiceResponse:
            for rl in request.resource_logs:
                resource = {a.key: a.value.string_value for a in rl.resource.attributes}
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        received.logs.append(
                            {
                                "body": r.body.string_value,
                                "attributes": {a.key: a.value.string_value for a in r.attributes},
                                "resource": resource,
                            }
                        )
            return logs_service_pb2.ExportLogsServiceResponse()

    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    server.add_insecure_port(f"{host}:{grpc_port}")
    await server.start()

    async def http_traces(request: web.Request) -> web.Response:
        message = trace_service_pb2.ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.spans += _otlp_spans(message)
        return web.Response(
            body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", http_traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, http_port).start()
    try:
        yield received
    finally:
        await runner.cleanup()
        await server.stop(None)

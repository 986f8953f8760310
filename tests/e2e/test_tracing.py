"""Tracing through real Envoy: the mesh config names the tracers (Zipkin, OpenTelemetry
over gRPC or HTTP), Telemetry picks one and the sampling; a request through two
sidecars is one trace whose client span (the caller's sidecar) is the parent of the
server span (the callee's sidecar), and the app sees the trace context."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from collectors import Received, Span, otlp, zipkin
from harness import Harness, mesh_config, namespace, pod, service, telemetry

pytestmark = pytest.mark.envoy


PROVIDERS = [
    {
        "name": "zipkin",
        "zipkin": {"service": "zipkin.observability.svc.cluster.local", "port": 9411},
    },
    {"name": "otel", "opentelemetry": {"service": "otel.observability", "port": 4317}},
    {
        "name": "otel-http",
        "opentelemetry": {
            "service": "otel.observability.svc.cluster.local",
            "port": 4318,
            "http": {"path": "/v1/traces"},
        },
    },
]


def _mesh(harness: Harness, client: str, web: str, zipkin_ip: str, otel_ip: str) -> None:
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("observability", injected=False),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("productpage", "shop", client, {"app": "productpage", "version": "v1"}),
        pod("web-1", "shop", web, {"app": "web", "version": "v1"}, (8080,)),
        service("zipkin", "observability", {"app": "zipkin"}, (9411,)),
        pod("zipkin", "observability", zipkin_ip, {"app": "zipkin"}, (9411,)),
        pod("otel", "observability", otel_ip, {"app": "otel"}, (4317, 4318)),
    )
    # The OTLP/HTTP port as a second, HTTP-named port of the same service.
    otel = service("otel", "observability", {"app": "otel"}, (4317,), protocol="grpc")
    otel["spec"]["ports"].append({"name": "http-otlp", "port": 4318, "targetPort": 4318})
    harness.write("otel.yaml", otel)
    harness.write("meshconfig.yaml", mesh_config(extensionProviders=PROVIDERS))


def mesh_tracing(provider: str, sampling: float) -> dict[str, object]:
    """The mesh-wide Telemetry (root namespace): `provider` at `sampling` percent."""
    spec = {"tracing": [{"providers": [{"name": provider}], "randomSamplingPercentage": sampling}]}
    return telemetry("mesh-default", "pilotfish-system", spec)


def one_trace(received: Received) -> tuple[Span, Span]:
    """The client and server spans of the one trace received (asserting there is one)."""
    traces = {s.trace_id for s in received.spans}
    assert len(traces) == 1, received.spans
    client = next(s for s in received.spans if s.kind == "CLIENT")
    server = next(s for s in received.spans if s.kind == "SERVER")
    return client, server


def two_spans(received: Received) -> bool:
    return len(received.spans) >= 2


async def test_zipkin_then_opentelemetry_one_trace_across_two_sidecars(
    harness: Harness, tmp_path: Path
) -> None:
    client, web, zipkin_ip, otel_ip = (harness.ip(n) for n in (80, 81, 82, 83))
    harness.backend("web-1", web, 8080)
    _mesh(harness, client, web, zipkin_ip, otel_ip)
    harness.write(
        "telemetry.yaml",
        telemetry(
            "mesh-default",
            "pilotfish-system",
            {
                "tracing": [
                    {
                        "providers": [{"name": "zipkin"}],
                        "randomSamplingPercentage": 100,
                        "customTags": {
                            "team": {"literal": {"value": "books"}},
                            "user": {"header": {"name": "x-user", "defaultValue": "nobody"}},
                            "pod": {"environment": {"name": "POD_NAME"}},
                            "path": {"formatter": {"value": "%REQ(:PATH)%"}},
                        },
                    }
                ]
            },
        ),
    )
    async with zipkin(zipkin_ip, 9411) as spans, otlp(otel_ip, 4317, 4318) as otel:
        await harness.start()
        r = await harness.get(client, "http://web.shop/books", {"x-user": "jason"})
        assert r.status == 200
        await spans.wait(two_spans)
        parent, child = one_trace(spans)
        assert (parent.service, child.service) == ("productpage.shop", "web.shop")
        assert child.parent_id == parent.span_id
        assert parent.tags["team"] == child.tags["team"] == "books"
        assert parent.tags["user"] == "jason"
        assert (parent.tags["pod"], child.tags["pod"]) == ("productpage", "web-1")
        assert parent.tags["path"] == child.tags["path"] == "/books"
        assert child.tags["http.status_code"] == "200"
        # The app sees B3 context naming the server span, to pass on to its own calls.
        seen = r.json["headers"]
        assert seen["x-b3-traceid"] == parent.trace_id
        assert seen["x-b3-spanid"] == child.span_id
        assert seen["x-b3-sampled"] == "1"

        # Telemetry switches the mesh to OpenTelemetry (W3C trace context), over gRPC.
        spans.spans.clear()
        await harness.apply(
            "telemetry.yaml",
            mesh_tracing("otel", 100),
        )
        await asyncio.sleep(2.5)  # pooled connections drain (1 s here) to the new tracer
        r = await harness.get(client, "http://web.shop/otel")
        assert r.status == 200
        await otel.wait(two_spans)
        parent, child = one_trace(otel)
        assert (parent.service, child.service) == ("productpage.shop", "web.shop")
        assert child.parent_id == parent.span_id
        _, trace_id, span_id, flags = r.json["headers"]["traceparent"].split("-")
        assert (trace_id, span_id, flags) == (parent.trace_id, child.span_id, "01")
        assert not spans.spans  # nothing went to Zipkin any more

        # Sampling 0 for the mesh, with Zipkin (B3): a request from the client starts
        # no trace, but one arriving with a sampled B3 context is followed by both
        # sidecars (Istio: a prior sampling decision is respected).
        await harness.apply(
            "telemetry.yaml",
            mesh_tracing("zipkin", 0),
        )
        await asyncio.sleep(2.5)
        otel.spans.clear()
        for i in range(5):
            assert (await harness.get(client, f"http://web.shop/unsampled/{i}")).status == 200
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        context = {"x-b3-traceid": trace, "x-b3-spanid": "00f067aa0ba902b7", "x-b3-sampled": "1"}
        assert (await harness.get(client, "http://web.shop/sampled", context)).status == 200
        await spans.wait(two_spans)
        await asyncio.sleep(6)  # Zipkin flushes every 5 s: anything else is in by now
        assert {s.trace_id for s in spans.spans} == {trace}, spans.spans
        parent, child = one_trace(spans)
        assert parent.parent_id == "00f067aa0ba902b7"
        assert child.parent_id == parent.span_id

        # A workload's own Telemetry wins over the mesh's: web reports over OTLP/HTTP
        # at 100%, the client still samples 0% with Zipkin.
        spans.spans.clear()
        await harness.apply(
            "telemetry.yaml",
            mesh_tracing("zipkin", 0),
            telemetry(
                "web",
                "shop",
                {
                    "selector": {"matchLabels": {"app": "web"}},
                    "tracing": [
                        {"providers": [{"name": "otel-http"}], "randomSamplingPercentage": 100}
                    ],
                },
            ),
        )
        await asyncio.sleep(2.5)
        assert (await harness.get(client, "http://web.shop/workload")).status == 200
        await otel.wait(lambda got: len(got.spans) >= 1)
        (span,) = otel.spans
        assert (span.kind, span.service) == ("SERVER", "web.shop")
        assert not spans.spans

        # disableContextPropagation: spans are still reported, but no trace context
        # reaches the app (Istio: for apps that manage their own).
        quiet = mesh_tracing("zipkin", 100)
        quiet["spec"]["tracing"][0]["disableContextPropagation"] = True
        await harness.apply("telemetry.yaml", quiet)
        await asyncio.sleep(2.5)
        spans.spans.clear()
        r = await harness.get(client, "http://web.shop/quiet")
        assert r.status == 200
        assert not {"x-b3-traceid", "x-b3-spanid", "traceparent"} & set(r.json["headers"])
        await spans.wait(lambda got: len(got.spans) >= 1)

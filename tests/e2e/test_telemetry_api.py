"""The Telemetry API's metrics and access logging through real Envoy: a namespace's
Telemetry stops the client side counting requests, relabels (a CEL expression) and
drops a label; the server side's access log goes to an OpenTelemetry collector, only
for 5xx; a workload's own Telemetry turns its metrics off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from collectors import otlp
from harness import Harness, mesh_config, namespace, pod, series, service, telemetry, total

pytestmark = pytest.mark.envoy

REQUESTS = "envoy_istio_requests_total"
DURATION = "envoy_istio_request_duration_milliseconds_count"
Rows = list[tuple[dict[str, str], float]]


async def settled(admin: str, name: str, want: float, **match: str) -> Rows:
    """The metric's samples once those matching add up to `want` (histograms show at
    Envoy's stats flush, every 5 s)."""
    rows: Rows = []
    for _ in range(150):
        rows = await asyncio.to_thread(series, admin, name)
        if total(rows, **match) == want:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"{admin} {name} {match}: {rows}")


async def test_metric_overrides_and_otel_access_logs(harness: Harness, tmp_path: Path) -> None:
    client, web, otel_ip = harness.ip(90), harness.ip(91), harness.ip(92)
    harness.backend("web-1", web, 8080)
    otel = service("otel", "observability", {"app": "otel"}, (4317,), protocol="grpc")
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("observability", injected=False),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("productpage", "shop", client, {"app": "productpage"}),
        pod("web-1", "shop", web, {"app": "web"}, (8080,)),
        otel,
        pod("otel", "observability", otel_ip, {"app": "otel"}, (4317,)),
    )
    provider = {
        "name": "otel-logs",
        "envoyOtelAls": {
            "service": "otel.observability.svc.cluster.local",
            "port": 4317,
            "logName": "shop-access",
            "logFormat": {
                "text": "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%",
                "labels": {"code": "%RESPONSE_CODE%", "peer": "%DOWNSTREAM_PEER_URI_SAN%"},
            },
        },
    }
    harness.write("meshconfig.yaml", mesh_config(extensionProviders=[provider]))
    harness.write(
        "telemetry.yaml",
        telemetry(
            "shop",
            "shop",
            {
                "metrics": [
                    {
                        "overrides": [
                            {
                                "match": {"metric": "REQUEST_COUNT", "mode": "CLIENT"},
                                "disabled": True,
                            },
                            {
                                "tagOverrides": {
                                    "request_host": {"value": "request.host"},
                                    "source_principal": {"operation": "REMOVE"},
                                }
                            },
                        ]
                    }
                ],
                "accessLogging": [
                    {
                        "match": {"mode": "SERVER"},
                        "providers": [{"name": "otel-logs"}],
                        "filter": {"expression": "response.code >= 500"},
                    }
                ],
            },
        ),
    )
    async with otlp(otel_ip, 4317, 0) as received:
        await harness.start()
        for i in range(3):
            assert (await harness.get(client, f"http://web.shop/ok/{i}")).status == 200
        await harness.behave(f"{web}:8080", status=500)
        for i in range(2):
            assert (await harness.get(client, f"http://web.shop/fail/{i}")).status == 500

        # The server's sidecar logs the two failures only, to the collector.
        await received.wait(lambda got: len(got.logs) >= 2)
        await asyncio.sleep(2)  # a third record would have arrived by now (1 s flushes)
        assert sorted(r["body"] for r in received.logs) == ["GET /fail/0 500", "GET /fail/1 500"]
        for record in received.logs:
            assert record["attributes"]["code"] == "500"
            # mesh mTLS: the server's sidecar knows the client by its certificate
            assert record["attributes"]["peer"] == "spiffe://cluster.local/ns/shop/sa/default"

        client_admin, web_admin = f"{client}:15000", f"{web}:15000"
        # Client side: no request count, but the duration histogram, relabelled.
        assert total(await asyncio.to_thread(series, client_admin, REQUESTS)) == 0
        durations = await settled(
            client_admin, DURATION, 5, reporter="source", request_host="web.shop"
        )
        assert all("source_principal" not in labels for labels, _ in durations)
        # Server side: counted, with the new label and without the removed one.
        counted = await asyncio.to_thread(series, web_admin, REQUESTS)
        assert total(counted, reporter="destination", response_code="200") == 3
        assert total(counted, reporter="destination", response_code="500") == 2
        assert total(counted, request_host="web.shop") == 5
        assert all("source_principal" not in labels for labels, _ in counted)

        # The workload's own Telemetry: web stops reporting metrics at all.
        await harness.apply(
            "web-telemetry.yaml",
            telemetry(
                "web",
                "shop",
                {
                    "selector": {"matchLabels": {"app": "web"}},
                    "metrics": [{"overrides": [{"disabled": True}]}],
                },
            ),
        )
        await asyncio.sleep(2.5)  # pooled connections drain (1 s here) to the new listener
        await harness.behave(f"{web}:8080", status=200)
        for i in range(3):
            assert (await harness.get(client, f"http://web.shop/after/{i}")).status == 200
        await asyncio.sleep(1)
        # The old listener's stats go with it once drained: web reports none any more.
        assert await asyncio.to_thread(series, web_admin, REQUESTS) == []
        await settled(client_admin, DURATION, 8, reporter="source")  # the client still counts

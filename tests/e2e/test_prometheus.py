"""A real Prometheus (Debian's) scraping real sidecars with the chart's own rename rule
(its PodMonitor's metricRelabelings), answering the queries Kiali's graph and Istio's
dashboards make, under Istio's metric names."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from harness import Harness, namespace, pod, service
from promserver import prometheus, value

from pilotfish_operator import meshstats, top

pytestmark = pytest.mark.envoy


async def test_prometheus_scrapes_istio_metrics_from_the_sidecars(
    harness: Harness, tmp_path: Path
) -> None:
    client, web = harness.ip(60), harness.ip(61)
    harness.backend("web-1", web, 8080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("productpage", "shop", client, {"app": "productpage", "version": "v1"}),
        pod("web-1", "shop", web, {"app": "web", "version": "v1"}, (8080,)),
    )
    await harness.start()

    assert harness.mesh is not None and harness.mesh.monitoring
    control_plane = [harness.mesh.monitoring]
    with prometheus(tmp_path, [f"{client}:15000", f"{web}:15000"], control_plane) as prom:
        url = prom.url
        await harness.split(client, "http://web.shop/", 30)

        for reporter in ("source", "destination"):
            total = (
                f'sum(istio_requests_total{{reporter="{reporter}",destination_service_name="web"}})'
            )
            assert value(await prom.eventually(total, lambda f: value(f) >= 30)) == 30
        # Kiali's workload graph: who calls whom, from the client's side, by workload.
        edges = await prom.eventually(
            'sum(istio_requests_total{reporter="source"}) by '
            "(source_workload, destination_workload, destination_service, "
            "connection_security_policy, response_code)",
            bool,
        )
        assert [e["metric"] for e in edges] == [
            {
                "source_workload": "productpage",
                "destination_workload": "web-1",
                "destination_service": "web.shop.svc.cluster.local",
                "connection_security_policy": "unknown",
                "response_code": "200",
            }
        ]
        # Istio's dashboards: the server-side view is mutual TLS, and latency quantiles
        # come out of the histogram (Envoy publishes it every 5 s).
        mtls = (
            'sum(istio_requests_total{reporter="destination",'
            'connection_security_policy="mutual_tls"})'
        )
        assert value(await prom.eventually(mtls, bool)) == 30
        p99 = (
            "histogram_quantile(0.99, sum(istio_request_duration_milliseconds_bucket"
            '{reporter="destination",destination_service_name="web"}) by (le))'
        )
        await prom.eventually(p99, lambda f: bool(f) and f[0]["value"][1] not in ("NaN", "0"))

        # `pilotfish top --prometheus` reads the same series: what changed in its window
        # (the first 30 were already counted when Prometheus first saw the series).
        await harness.split(client, "http://web.shop/", 20)

        def web_row() -> top.Row | None:
            rows = {r.name: r for r in top.rows(meshstats.read_prometheus(url, 60))}
            return rows.get("web.shop.svc.cluster.local")

        for _ in range(100):
            row = await asyncio.to_thread(web_row)
            if row is not None and row.requests >= 15 and row.p99:
                break
            await asyncio.sleep(0.2)
        assert row is not None and row.success == 1.0 and row.requests >= 15 and row.p99
        # The control plane's own series, as Istio's control-plane dashboard reads them.
        connected = await prom.eventually(
            'sum(pilot_xds{job="pilotfish"})', lambda f: value(f) >= 2
        )
        assert value(connected) == 2
        # Nothing keeps Envoy's name for these (the rename applies to every series).
        assert await asyncio.to_thread(prom.query, "count({__name__=~'envoy_istio_.*'})") == []

"""A real Prometheus (Debian's) scraping real sidecars with the chart's own rename rule
(its PodMonitor's metricRelabelings), answering the queries Kiali's graph and Istio's
dashboards make, under Istio's metric names."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Harness, namespace, pod, service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "charts"))
from chartrender import documents, find, render

pytestmark = pytest.mark.envoy


def chart_relabelings() -> list[dict[str, Any]]:
    """The PodMonitor's metricRelabelings as Prometheus' own metric_relabel_configs."""
    monitor = find(
        documents(render("--set", "metrics.podMonitor.enabled=true")),
        "PodMonitor",
        "pilotfish-sidecars",
    )
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{keys.get(k, k): v for k, v in rule.items()} for rule in endpoint["metricRelabelings"]]


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_istio_metrics_from_the_sidecars(
    harness: Harness, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run `make system-deps` (Debian's package)")
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

    port = _free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "pilotfish-sidecars",
                "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": [f"{client}:15000", f"{web}:15000"]}],
                "metric_relabel_configs": chart_relabelings(),
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(  # noqa: ASYNC220 - runs alongside, stopped below
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        await harness.split(client, "http://web.shop/", 30)
        total = 'sum(istio_requests_total{reporter="destination",destination_service_name="web"})'

        async def answered() -> list[dict[str, Any]]:
            for _ in range(300):
                try:
                    found = await asyncio.to_thread(query, port, total)
                except OSError:
                    found = []
                if found and float(found[0]["value"][1]) >= 30:
                    return found
                await asyncio.sleep(0.2)
            raise AssertionError(f"Prometheus never saw the requests; {tmp_path}/prometheus.log")

        assert float((await answered())[0]["value"][1]) == 30
        # Kiali's workload graph: who calls whom, from the client's side, by workload.
        edges = await asyncio.to_thread(
            query,
            port,
            'sum(istio_requests_total{reporter="source"}) by '
            "(source_workload, destination_workload, destination_service, "
            "connection_security_policy, response_code)",
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
        assert await asyncio.to_thread(
            query,
            port,
            'sum(istio_requests_total{reporter="destination",'
            'connection_security_policy="mutual_tls"})',
        )
        p99 = (
            "histogram_quantile(0.99, sum(istio_request_duration_milliseconds_bucket"
            '{reporter="destination",destination_service_name="web"}) by (le))'
        )
        for _ in range(100):
            found = await asyncio.to_thread(query, port, p99)
            if found and found[0]["value"][1] not in ("NaN", "0"):
                break
            await asyncio.sleep(0.2)
        assert found and float(found[0]["value"][1]) > 0, found
        # Nothing keeps Envoy's name for these (the rename applies to every series).
        assert await asyncio.to_thread(query, port, "count({__name__=~'envoy_istio_.*'})") == []
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

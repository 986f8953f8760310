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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Harness, namespace, pod, service

from pilotfish_operator import top

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
        url = f"http://127.0.0.1:{port}"
        await harness.split(client, "http://web.shop/", 30)

        async def eventually(promql: str, accept: Callable[[list[dict[str, Any]]], bool]) -> Any:
            """Scrapes land every second, each sidecar's on its own: poll until `accept`."""
            found: list[dict[str, Any]] = []
            for _ in range(300):
                try:
                    found = await asyncio.to_thread(query, port, promql)
                except OSError:
                    found = []  # not listening yet
                if accept(found):
                    return found
                await asyncio.sleep(0.2)
            raise AssertionError(f"{promql}: {found}; see {tmp_path}/prometheus.log")

        def value(found: list[dict[str, Any]]) -> float:
            return float(found[0]["value"][1]) if found else 0.0

        for reporter in ("source", "destination"):
            total = (
                f'sum(istio_requests_total{{reporter="{reporter}",destination_service_name="web"}})'
            )
            assert value(await eventually(total, lambda f: value(f) >= 30)) == 30
        # Kiali's workload graph: who calls whom, from the client's side, by workload.
        edges = await eventually(
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
        assert value(await eventually(mtls, bool)) == 30
        p99 = (
            "histogram_quantile(0.99, sum(istio_request_duration_milliseconds_bucket"
            '{reporter="destination",destination_service_name="web"}) by (le))'
        )
        await eventually(p99, lambda f: bool(f) and f[0]["value"][1] not in ("NaN", "0"))

        # `pilotfish top --prometheus` reads the same series: what changed in its window
        # (the first 30 were already counted when Prometheus first saw the series).
        await harness.split(client, "http://web.shop/", 20)

        def web_row() -> top.Row | None:
            rows = {r.name: r for r in top.from_prometheus(url, 60, "service")}
            return rows.get("web.shop.svc.cluster.local")

        for _ in range(100):
            row = await asyncio.to_thread(web_row)
            if row is not None and row.requests >= 15 and row.p99:
                break
            await asyncio.sleep(0.2)
        assert row is not None and row.success == 1.0 and row.requests >= 15 and row.p99
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

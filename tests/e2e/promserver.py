"""A real Prometheus (Debian's package) for end-to-end tests: scrapes the targets it
is given every second, with the chart's own PodMonitor relabelling, and answers
PromQL over its HTTP API."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "charts"))
from chartrender import documents, find, render

Series = list[dict[str, Any]]


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


@dataclass
class Prometheus:
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, promql: str) -> Series:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        result: Series = body["data"]["result"]
        return result

    async def eventually(
        self, promql: str, accept: Callable[[Series], bool], tries: int = 300
    ) -> Series:
        """Scrapes land every second, each target's on its own: poll until `accept`."""
        found: Series = []
        for _ in range(tries):
            try:
                found = await asyncio.to_thread(self.query, promql)
            except OSError:
                found = []  # not listening yet
            if accept(found):
                return found
            await asyncio.sleep(0.2)
        raise AssertionError(f"{promql}: {found}; see {self.workdir}/prometheus.log")


def value(found: Series) -> float:
    """The value of a one-series answer (0 for none)."""
    return float(found[0]["value"][1]) if found else 0.0


@contextmanager
def prometheus(
    workdir: Path, sidecars: Sequence[str], control_plane: Sequence[str] = ()
) -> Iterator[Prometheus]:
    """Prometheus scraping sidecar admin addresses (`ip:15000`, /stats/prometheus,
    renamed by the chart's rule) and control-plane metrics addresses (/metrics)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run `make system-deps` (Debian's package)")
    port = _free_port()
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "pilotfish-sidecars",
            "metrics_path": "/stats/prometheus",
            "static_configs": [{"targets": list(sidecars)}],
            "metric_relabel_configs": chart_relabelings(),
        }
    ]
    if control_plane:
        jobs.append({"job_name": "pilotfish", "static_configs": [{"targets": list(control_plane)}]})
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config | {"scrape_configs": jobs}))
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield Prometheus(port, workdir)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

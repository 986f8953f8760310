"""`pilotfish top`: per service (or workload) success rate, requests per second and
latency percentiles, like `linkerd viz stat`, from Istio's standard metrics as the
servers' sidecars report them (reporter=destination).

It reads the sidecars' own Prometheus endpoints twice, `--window` seconds apart (local
mode's state file lists them), and works on the difference; or, with `--prometheus`,
asks a Prometheus that scrapes the mesh (Istio's metric names) over the last window.
Percentiles interpolate within histogram buckets, as Prometheus' histogram_quantile
does. Envoy publishes histograms at its stats flush (every 5 s): a window shorter than
that shows no latency.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "envoy_istio_requests_total"
DURATION = "envoy_istio_request_duration_milliseconds_bucket"
GROUPS = {"service": "destination_service", "workload": "destination_workload"}


@dataclass
class Sample:
    """What one scrape of every sidecar saw, per group."""

    requests: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    failures: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[str, dict[float, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )


@dataclass(frozen=True)
class Row:
    name: str
    requests: float
    success: float | None
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None


def scrape(texts: Iterable[str], by: str = "service") -> Sample:
    """Sum the destination-reported series of every sidecar's metrics text."""
    label = GROUPS[by]
    out = Sample()
    for text in texts:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.labels.get("reporter") != "destination":
                    continue
                key = s.labels.get(label, "unknown")
                if s.name == REQUESTS:
                    out.requests[key] += s.value
                    if s.labels.get("response_code", "").startswith("5"):
                        out.failures[key] += s.value
                elif s.name == DURATION:
                    out.buckets[key][float(s.labels["le"])] += s.value
    return out


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """histogram_quantile over cumulative buckets (upper bound -> count)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # above the last finite bucket: its bound, as Prometheus
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def compare(before: Sample, after: Sample, seconds: float) -> list[Row]:
    rows = []
    for name in sorted(after.requests):
        requests = after.requests[name] - before.requests.get(name, 0.0)
        failures = after.failures.get(name, 0.0) - before.failures.get(name, 0.0)
        old = before.buckets.get(name, {})
        delta = {b: c - old.get(b, 0.0) for b, c in after.buckets.get(name, {}).items()}
        rows.append(
            Row(
                name=name,
                requests=requests,
                success=(requests - failures) / requests if requests > 0 else None,
                rps=requests / seconds if seconds > 0 else 0.0,
                p50=quantile(0.5, delta),
                p95=quantile(0.95, delta),
                p99=quantile(0.99, delta),
            )
        )
    return rows


def render(rows: Sequence[Row], by: str = "service") -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"

    table = [[by.upper(), "SUCCESS", "RPS", "P50", "P95", "P99"]]
    for r in rows:
        success = "-" if r.success is None else f"{r.success * 100:.2f}%"
        table.append([r.name, success, f"{r.rps:.1f}", ms(r.p50), ms(r.p95), ms(r.p99)])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    )


def sidecar_admins(state: Path) -> list[str]:
    """The admin address of every injected pod in local mode's state file."""
    pods = json.loads(state.read_text()).get("pods", {})
    return sorted(p["admin"] for p in pods.values() if p.get("injected") and p.get("admin"))


def _fetch(admin: str) -> str:
    with urllib.request.urlopen(f"http://{admin}/stats/prometheus", timeout=5) as r:
        return str(r.read().decode())


def run(admins: Sequence[str], window: float, by: str) -> list[Row]:
    before = scrape((_fetch(a) for a in admins), by)
    start = time.monotonic()
    time.sleep(window)
    after = scrape((_fetch(a) for a in admins), by)
    return compare(before, after, time.monotonic() - start)


def from_prometheus(url: str, window: float, by: str = "service") -> list[Row]:
    """The same rows from a Prometheus's istio_* series over the last `window` seconds."""
    label, span = GROUPS[by], f"{max(1, int(window))}s"
    selector = 'reporter="destination"'

    def ask(promql: str) -> dict[str, float]:
        query = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query?{query}", timeout=10) as r:
            body = json.load(r)
        out = {}
        for item in body["data"]["result"]:
            value = float(item["value"][1])
            if not math.isnan(value):
                out[item["metric"].get(label, "unknown")] = value
        return out

    counts = f"istio_requests_total{{{selector}}}"
    requests = ask(f"sum(increase({counts}[{span}])) by ({label})")
    failed = f'istio_requests_total{{{selector},response_code=~"5.."}}'
    failures = ask(f"sum(increase({failed}[{span}])) by ({label})")
    buckets = f"istio_request_duration_milliseconds_bucket{{{selector}}}"
    latency = {
        q: ask(f"histogram_quantile({q}, sum(rate({buckets}[{span}])) by (le, {label}))")
        for q in (0.5, 0.95, 0.99)
    }
    rows = []
    for name, count in sorted(requests.items()):
        rows.append(
            Row(
                name=name,
                requests=count,
                success=(count - failures.get(name, 0.0)) / count if count > 0 else None,
                rps=count / window,
                p50=latency[0.5].get(name),
                p95=latency[0.95].get(name),
                p99=latency[0.99].get(name),
            )
        )
    return rows


def cmd_top(args: argparse.Namespace) -> int:
    if args.prometheus:
        rows = from_prometheus(args.prometheus, args.window, args.by)
    else:
        admins = list(args.admin) or sidecar_admins(Path(args.state))
        rows = run(admins, args.window, args.by)
    print(render(rows, args.by))
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "top", help="per service: success rate, requests/s, p50/p95/p99 (like linkerd viz stat)"
    )
    p.add_argument("--state", help="local mode's state file: read every sidecar")
    p.add_argument(
        "--admin", action="append", default=[], help="a sidecar's admin host:port (repeatable)"
    )
    p.add_argument(
        "--prometheus", help="a Prometheus that scrapes the mesh, e.g. http://prometheus:9090"
    )
    p.add_argument(
        "--window", type=float, default=10.0, help="seconds between the two reads (or looked back)"
    )
    p.add_argument("--by", choices=sorted(GROUPS), default="service", help="group rows by")
    p.set_defaults(func=cmd_top)

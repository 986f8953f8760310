"""Istio's standard request metrics over a time window, grouped by any of their labels.

Two ways in, one shape out (`Window`): the sidecars' own Prometheus endpoints read
twice and differenced (local mode, `--admin`), or a Prometheus that scrapes the mesh
asked for `increase()` over the window (series renamed `istio_*`, as the chart's
PodMonitor does). `pilotfish top` and the dashboard both read the mesh through here.

Percentiles interpolate within histogram buckets as Prometheus' histogram_quantile
does; computing them here from the buckets' increase gives the same answer as
`histogram_quantile(q, sum(rate(...)))` and keeps one code path for both sources.
Envoy publishes histograms at its stats flush (every 5 s): a window shorter than that
may show no latency.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_version",
    "response_code",
    "connection_security_policy",
)
"""The labels kept: enough for every view, few enough that a window stays small."""

REQUESTS = "istio_requests_total"
DURATION = "istio_request_duration_milliseconds_bucket"
ENVOY_PREFIX = "envoy_"  # a sidecar's own endpoint: Envoy prefixes its stats

Series = tuple[tuple[str, str], ...]
"""A series' kept labels, sorted by name."""


def _series(labels: Mapping[str, str]) -> Series:
    return tuple((k, labels.get(k, "unknown")) for k in LABELS)


@dataclass(frozen=True)
class Counts:
    """Cumulative (or, after `minus`, windowed) counts per series."""

    requests: Mapping[Series, float] = field(default_factory=dict)
    durations: Mapping[Series, Mapping[float, float]] = field(default_factory=dict)
    """Per series, cumulative histogram buckets: upper bound (ms) -> count."""

    def minus(self, before: Counts) -> Counts:
        """What happened since `before`. A counter that went down was reset (its
        sidecar restarted): all of its current value is new."""

        def delta(now: float, then: float) -> float:
            return now - then if now >= then else now

        requests = {s: delta(v, before.requests.get(s, 0.0)) for s, v in self.requests.items()}
        durations = {}
        for s, buckets in self.durations.items():
            old = before.durations.get(s, {})
            durations[s] = {le: delta(c, old.get(le, 0.0)) for le, c in buckets.items()}
        return Counts(requests, durations)


def parse(texts: Iterable[str]) -> Counts:
    """Sum the Istio request series of every sidecar's Prometheus text."""
    requests: dict[Series, float] = defaultdict(float)
    durations: dict[Series, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for text in texts:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                name = s.name.removeprefix(ENVOY_PREFIX)
                if name == REQUESTS:
                    requests[_series(s.labels)] += s.value
                elif name == DURATION:
                    durations[_series(s.labels)][float(s.labels["le"])] += s.value
    return Counts(dict(requests), {k: dict(v) for k, v in durations.items()})


def sidecar_text(admin: str) -> str:
    """A sidecar's Istio series (its admin's Prometheus endpoint, filtered by Envoy)."""
    url = f"http://{admin}/stats/prometheus?filter=istio"
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def read_sidecars(admins: Sequence[str]) -> Counts:
    """One read of every sidecar, in parallel; a sidecar that does not answer (it is
    restarting) is left out of this read."""

    def fetch(admin: str) -> str:
        try:
            return sidecar_text(admin)
        except OSError:
            return ""

    if not admins:
        return Counts()
    with ThreadPoolExecutor(max_workers=min(8, len(admins))) as pool:
        return parse(pool.map(fetch, admins))


def read_prometheus(url: str, seconds: float) -> Window:
    """The last `seconds` from a Prometheus that scrapes the mesh (`istio_*` names)."""
    span = f"{max(1, round(seconds))}s"
    by = ", ".join(LABELS)

    def ask(promql: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query?{query}", timeout=10) as r:
            body = json.load(r)
        found: list[dict[str, Any]] = body["data"]["result"]
        return [item for item in found if not math.isnan(float(item["value"][1]))]

    requests: dict[Series, float] = defaultdict(float)
    for item in ask(f"sum by ({by}) (increase({REQUESTS}[{span}]))"):
        requests[_series(item["metric"])] += float(item["value"][1])
    durations: dict[Series, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for item in ask(f"sum by ({by}, le) (increase({DURATION}[{span}]))"):
        le = float(item["metric"]["le"])
        durations[_series(item["metric"])][le] += float(item["value"][1])
    counts = Counts(dict(requests), {k: dict(v) for k, v in durations.items()})
    return Window(counts, float(seconds))


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


@dataclass
class Stats:
    """One group's requests over a window."""

    seconds: float
    requests: float = 0.0
    failures: float = 0.0
    """Answered 5xx (Istio's and Linkerd's "failure": 4xx is the client's doing)."""
    mutual_tls: float = 0.0
    """Requests the server's sidecar took over mutual TLS (destination-reported only)."""
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def success(self) -> float | None:
        return (self.requests - self.failures) / self.requests if self.requests > 0 else None

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests > 0 else None

    @property
    def mtls(self) -> float | None:
        """The share of requests over mutual TLS (None: nothing to say)."""
        return self.mutual_tls / self.requests if self.requests > 0 else None

    def quantile(self, q: float) -> float | None:
        return quantile(q, self.buckets)

    def add(self, other: Stats) -> Stats:
        out = Stats(self.seconds, self.requests + other.requests, self.failures + other.failures)
        out.mutual_tls = self.mutual_tls + other.mutual_tls
        for buckets in (self.buckets, other.buckets):
            for le, count in buckets.items():
                out.buckets[le] += count
        return out

    def summary(self) -> dict[str, float | None]:
        """The numbers a view shows (latencies in ms)."""
        return {
            "requests": self.requests,
            "rps": self.rps,
            "success": self.success,
            "error_rate": self.error_rate,
            "p50": self.quantile(0.5),
            "p95": self.quantile(0.95),
            "p99": self.quantile(0.99),
        }


@dataclass(frozen=True)
class Window:
    """What the mesh did over `seconds`."""

    counts: Counts
    seconds: float

    def group(self, by: Sequence[str], **match: str) -> dict[tuple[str, ...], Stats]:
        """Stats per value of the `by` labels, over the series whose labels equal
        `match` (e.g. reporter="destination")."""
        out: dict[tuple[str, ...], Stats] = {}

        def stats(series: Series) -> Stats | None:
            labels = dict(series)
            if any(labels[k] != v for k, v in match.items()):
                return None
            key = tuple(labels[k] for k in by)
            return out.setdefault(key, Stats(self.seconds))

        for series, count in self.counts.requests.items():
            s = stats(series)
            if s is None:
                continue
            labels = dict(series)
            s.requests += count
            if labels["response_code"].startswith("5"):
                s.failures += count
            if labels["connection_security_policy"] == "mutual_tls":
                s.mutual_tls += count
        for series, buckets in self.counts.durations.items():
            s = stats(series)
            if s is None:
                continue
            for le, count in buckets.items():
                s.buckets[le] += count
        return out


def add_source_arguments(parser: Any) -> None:
    """Where a command reads the mesh (`top`, `dashboard`): `--state`, `--admin`...,
    or `--prometheus`."""
    parser.add_argument("--state", help="local mode's state file: read every sidecar it lists")
    parser.add_argument(
        "--admin", action="append", default=[], help="a sidecar's admin host:port (repeatable)"
    )
    parser.add_argument(
        "--prometheus", help="a Prometheus that scrapes the mesh, e.g. http://prometheus:9090"
    )


def sidecar_admins(state: Mapping[str, Any]) -> list[str]:
    """The admin address of every injected pod in local mode's state."""
    pods: Mapping[str, Any] = state.get("pods", {})
    return sorted(p["admin"] for p in pods.values() if p.get("injected") and p.get("admin"))

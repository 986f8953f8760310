"""The control plane's Prometheus metrics, read at scrape time from what the parts
already record (nothing is added to the hot paths)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.status import StatusRegistry

from .pipeline import Pipeline

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MeshCollector(Collector):
    def __init__(self, pipeline: Pipeline, cache: SnapshotCache, status: StatusRegistry) -> None:
        self.pipeline = pipeline
        self.cache = cache
        self.status = status

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "pilotfish_xds_connected_proxies",
            "Proxies with an open xDS stream to this replica.",
            value=len(self.cache.connected()),
        )
        yield CounterMetricFamily(
            "pilotfish_xds_nacks",
            "Configurations proxies rejected (they keep their last good one).",
            value=self.status.nacks_total,
        )
        stats = self.pipeline.stats
        yield CounterMetricFamily(
            "pilotfish_pipeline_rebuilds", "Mesh rebuilds (debounced).", value=stats.rebuilds
        )
        yield GaugeMetricFamily(
            "pilotfish_pipeline_last_translate_seconds",
            "Objects to mesh IR, last rebuild.",
            value=stats.translate_s,
        )
        yield GaugeMetricFamily(
            "pilotfish_pipeline_last_encode_seconds",
            "Mesh IR to Envoy resources for the connected proxies, last rebuild.",
            value=stats.encode_s,
        )
        invalid = GaugeMetricFamily(
            "pilotfish_config_invalid_objects",
            "Objects rejected by validation (left out, or kept at their last good version).",
            labels=["kind"],
        )
        for kind, count in sorted(Counter(k for k, _, _ in self.pipeline.store.errors()).items()):
            invalid.add_metric([kind], count)
        yield invalid


def registry(pipeline: Pipeline, cache: SnapshotCache, status: StatusRegistry) -> CollectorRegistry:
    out = CollectorRegistry(auto_describe=False)
    out.register(MeshCollector(pipeline, cache, status))
    return out


def render(registry: CollectorRegistry) -> bytes:
    body: bytes = generate_latest(registry)
    return body

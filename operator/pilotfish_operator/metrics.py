"""The control plane's Prometheus metrics, read at scrape time from what the parts
already record (nothing is added to the hot paths)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from pilotfish_xds import types
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.status import CONVERGENCE_BUCKETS, StatusRegistry

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
        yield from self._istio()
        invalid = GaugeMetricFamily(
            "pilotfish_config_invalid_objects",
            "Objects rejected by validation (left out, or kept at their last good version).",
            labels=["kind"],
        )
        for kind, count in sorted(Counter(k for k, _, _ in self.pipeline.store.errors()).items()):
            invalid.add_metric([kind], count)
        yield invalid

    def _istio(self) -> Iterator[Metric]:
        """The same facts under the names Istio's control-plane dashboard and Kiali
        read (pilot_*), with Istio's type labels (cds, eds, lds, rds, sds)."""
        xds = GaugeMetricFamily(
            "pilot_xds", "Proxies connected to this replica (Istio's name).", labels=["version"]
        )
        xds.add_metric([VERSION], len(self.cache.connected()))
        yield xds
        for name, counts, help_text in (
            ("pilot_xds_pushes", self.status.pushes, "xDS responses sent, per type."),
            ("pilot_total_xds_rejects", self.status.rejects, "xDS NACKs, per type."),
        ):
            # Istio exports these counters without the `_total` suffix, and its
            # dashboards query them so: untyped keeps the exact name.
            family = UnknownMetricFamily(name, help_text, labels=["type"])
            for type_url, count in sorted(counts.items()):
                family.add_metric([_ISTIO_TYPES.get(type_url, type_url)], count)
            yield family
        convergence = self.status.convergence
        buckets = []
        cumulative = 0
        for bound, count in zip(
            (*CONVERGENCE_BUCKETS, float("inf")), convergence.counts, strict=True
        ):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "pilot_proxy_convergence_time",
            "Seconds from a change the control plane saw until a proxy acknowledged all of "
            "the config built from it.",
            buckets=buckets,
            sum_value=convergence.total,
        )
        store = self.pipeline.store
        counted = (("pilot_services", "Service"), ("pilot_virt_services", "VirtualService"))
        for name, kind in counted:
            count = sum(1 for _ in store.of_kind(kind))
            yield GaugeMetricFamily(name, f"{kind}s known to the mesh.", value=count)


_ISTIO_TYPES = {
    types.CLUSTER: "cds",
    types.ENDPOINT: "eds",
    types.LISTENER: "lds",
    types.ROUTE: "rds",
    types.SECRET: "sds",
}


def _version() -> str:
    try:
        return version("pilotfish")
    except PackageNotFoundError:  # a source tree
        return "unknown"


VERSION = _version()


def registry(pipeline: Pipeline, cache: SnapshotCache, status: StatusRegistry) -> CollectorRegistry:
    out = CollectorRegistry(auto_describe=False)
    out.register(MeshCollector(pipeline, cache, status))
    return out


def render(registry: CollectorRegistry) -> bytes:
    body: bytes = generate_latest(registry)
    return body

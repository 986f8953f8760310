"""The data layer `pilotfish top` and the dashboard share: Istio's series as sidecars
serve them, differenced over a window and grouped by label."""

from __future__ import annotations

import pytest

from pilotfish_operator.meshstats import Counts, Window, parse, quantile, sidecar_admins


def line(value: float, name: str = "envoy_istio_requests_total", **labels: str) -> str:
    pairs = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{pairs}}} {value}"


def test_quantile_interpolates_within_a_bucket_as_prometheus_does() -> None:
    buckets = {1.0: 0.0, 5.0: 50.0, 10.0: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(5.0)
    assert quantile(0.75, buckets) == pytest.approx(7.5)
    assert quantile(0.25, buckets) == pytest.approx(3.0)
    assert quantile(0.5, {float("inf"): 0.0}) is None
    # Above the last finite bound: that bound, as histogram_quantile answers.
    assert quantile(0.99, {10.0: 1.0, float("inf"): 100.0}) == 10.0


def test_series_of_every_sidecar_add_up_and_other_metrics_are_ignored() -> None:
    a = "\n".join(
        [
            line(3, reporter="source", destination_workload="web-v1", response_code="200"),
            line(7, "envoy_cluster_upstream_rq_total", envoy_cluster_name="x"),
        ]
    )
    b = line(2, reporter="source", destination_workload="web-v1", response_code="200")
    (stats,) = Window(parse([a, b]), 1.0).group(("destination_workload",)).values()
    assert stats.requests == 5
    # Labels a sidecar did not send read as Istio writes them: "unknown".
    assert Window(parse([a]), 1.0).group(("source_workload",)).keys() == {("unknown",)}


def test_a_reset_counter_counts_from_zero() -> None:
    before = parse([line(100, reporter="destination", response_code="200")])
    after = parse([line(4, reporter="destination", response_code="200")])
    (stats,) = Window(after.minus(before), 2.0).group(()).values()
    assert stats.requests == 4 and stats.rps == 2.0


def test_groups_count_failures_mtls_and_latency() -> None:
    text = "\n".join(
        [
            line(
                90,
                reporter="destination",
                destination_version="v1",
                response_code="200",
                connection_security_policy="mutual_tls",
            ),
            line(
                5,
                reporter="destination",
                destination_version="v2",
                response_code="200",
                connection_security_policy="mutual_tls",
            ),
            line(
                5,
                reporter="destination",
                destination_version="v2",
                response_code="503",
                connection_security_policy="none",
            ),
            line(4, reporter="destination", destination_version="v2", response_code="404"),
            line(
                14,
                "envoy_istio_request_duration_milliseconds_bucket",
                reporter="destination",
                destination_version="v2",
                le="10",
            ),
            line(
                14,
                "envoy_istio_request_duration_milliseconds_bucket",
                reporter="destination",
                destination_version="v2",
                le="+Inf",
            ),
            line(100, reporter="source", destination_version="v1", response_code="200"),
        ]
    )
    groups = Window(parse([text]), 10.0).group(("destination_version",), reporter="destination")
    v1, v2 = groups[("v1",)], groups[("v2",)]
    assert (v1.requests, v1.rps, v1.success, v1.mtls) == (90, 9.0, 1.0, 1.0)
    assert v1.quantile(0.99) is None  # no histogram for it
    # 4xx is the client's doing: only 5xx count as failures.
    assert (v2.requests, v2.failures, v2.error_rate) == (14, 5, pytest.approx(5 / 14))
    assert v2.mtls == pytest.approx(5 / 14)
    assert v2.quantile(0.5) == pytest.approx(5.0)
    both = v1.add(v2)
    assert (both.requests, both.failures, both.mutual_tls) == (104, 5, 95)
    assert both.summary()["p50"] == pytest.approx(5.0)


def test_no_traffic_has_no_rates_to_show() -> None:
    counts = parse([line(0, reporter="destination", response_code="200")])
    (stats,) = Window(counts.minus(Counts()), 5.0).group(()).values()
    assert stats.success is None and stats.error_rate is None and stats.mtls is None


def test_local_modes_state_names_every_sidecar() -> None:
    state = {
        "pods": {
            "shop/web": {"injected": True, "admin": "127.0.0.2:15000"},
            "shop/plain": {"injected": False},
        }
    }
    assert sidecar_admins(state) == ["127.0.0.2:15000"]

"""`pilotfish top`'s table, from Prometheus text as sidecars serve it."""

from __future__ import annotations

import pytest

from pilotfish_operator.meshstats import Counts, Window, parse
from pilotfish_operator.top import render, rows


def text(requests: dict[str, float], buckets: dict[str, float]) -> str:
    """A sidecar's metrics: requests per response code, one duration histogram."""
    lines = ["# TYPE envoy_istio_requests_total counter"]
    for code, value in requests.items():
        for reporter in ("destination", "source"):
            lines.append(
                f'envoy_istio_requests_total{{reporter="{reporter}",'
                f'destination_service="reviews.shop.svc.cluster.local",response_code="{code}"}} '
                f"{value}"
            )
    lines.append("# TYPE envoy_istio_request_duration_milliseconds histogram")
    for le, value in buckets.items():
        lines.append(
            f'envoy_istio_request_duration_milliseconds_bucket{{reporter="destination",'
            f'destination_service="reviews.shop.svc.cluster.local",le="{le}"}} {value}'
        )
    return "\n".join(lines) + "\n"


def test_rows_come_from_the_difference_between_two_reads() -> None:
    before = parse([text({"200": 10, "503": 0}, {"5": 5, "10": 10, "+Inf": 10})])
    after = parse([text({"200": 40, "503": 10}, {"5": 25, "10": 50, "+Inf": 50})])
    (row,) = rows(Window(after.minus(before), 10.0))
    assert row.name == "reviews.shop.svc.cluster.local"
    assert row.requests == 40  # source-reported series are not counted twice
    assert row.success == pytest.approx(0.75)
    assert row.rps == pytest.approx(4.0)
    assert row.p50 == pytest.approx(5.0)
    out = render([row])
    assert out.splitlines()[0].split() == ["SERVICE", "SUCCESS", "RPS", "P50", "P95", "P99"]
    assert out.splitlines()[1].split() == [
        "reviews.shop.svc.cluster.local",
        "75.00%",
        "4.0",
        "5.0ms",
        "9.5ms",
        "9.9ms",
    ]


def test_no_traffic_is_shown_as_such() -> None:
    after = parse([text({"200": 0}, {"+Inf": 0})])
    (row,) = rows(Window(after.minus(Counts()), 5.0))
    assert row.success is None and row.p99 is None
    assert render([row]).splitlines()[1].split()[1:] == ["-", "0.0", "-", "-", "-"]

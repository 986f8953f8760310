"""The dashboard's graph and service view from Istio's series, and its routes."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest

from pilotfish_operator import monitoring
from pilotfish_operator.dashboard.graph import graph, service
from pilotfish_operator.meshstats import Window, parse

SVC = {
    "destination_service": "reviews.shop.svc.cluster.local",
    "destination_service_name": "reviews",
    "destination_service_namespace": "shop",
    "destination_workload_namespace": "shop",
}


def series(value: float, **labels: str) -> str:
    pairs = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"envoy_istio_requests_total{{{pairs}}} {value}"


def both_sides(value: float, version: str, code: str = "200", **labels: str) -> list[str]:
    """productpage → reviews-<version>, as the client's and the server's sidecars count it."""
    common = {
        **SVC,
        "source_workload": "productpage",
        "source_workload_namespace": "shop",
        "destination_workload": f"reviews-{version}",
        "destination_version": version,
        "response_code": code,
        **labels,
    }
    return [
        series(value, reporter="source", connection_security_policy="unknown", **common),
        series(value, reporter="destination", connection_security_policy="mutual_tls", **common),
    ]


def canary() -> Window:
    lines = [
        *both_sides(90, "v1"),
        *both_sides(5, "v2"),
        *both_sides(5, "v2", "500"),
        # A caller without a sidecar: only the server's sidecar saw it, in plaintext.
        series(
            10,
            reporter="destination",
            source_workload="unknown",
            connection_security_policy="none",
            destination_workload="reviews-v1",
            destination_version="v1",
            response_code="200",
            **SVC,
        ),
    ]
    return Window(parse(["\n".join(lines)]), 10.0)


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items}


def test_callers_services_and_workloads_with_the_canarys_shares() -> None:
    g = graph(canary())
    nodes, edges = by_id(g["nodes"]), by_id(g["edges"])
    assert {n: v["kind"] for n, v in nodes.items()} == {
        "workload:shop/productpage": "workload",
        "unknown": "unknown",
        "service:shop/reviews": "service",
        "workload:shop/reviews-v1": "workload",
        "workload:shop/reviews-v2": "workload",
    }
    assert nodes["workload:shop/reviews-v2"]["version"] == "v2"
    caller = edges["workload:shop/productpage->service:shop/reviews"]
    # The client's own count (not doubled by the server's), 5% failing, all mTLS.
    assert (caller["requests"], caller["rps"], caller["error_rate"]) == (100, 10.0, 0.05)
    assert caller["mtls"] is True
    plain = edges["unknown->service:shop/reviews"]
    assert (plain["requests"], plain["mtls"]) == (10, False)
    v1 = edges["service:shop/reviews->workload:shop/reviews-v1"]
    v2 = edges["service:shop/reviews->workload:shop/reviews-v2"]
    assert v1["share"] == pytest.approx(100 / 110) and v2["share"] == pytest.approx(10 / 110)
    assert (v2["error_rate"], v2["mtls"]) == (0.5, True)
    assert v1["mtls"] is False and v1["mtls_share"] == pytest.approx(90 / 100)
    assert nodes["service:shop/reviews"]["rps"] == pytest.approx(11.0)


def test_idle_series_draw_nothing() -> None:
    before = parse(["\n".join(both_sides(90, "v1"))])
    assert graph(Window(before.minus(before), 10.0)) == {"window": 10.0, "nodes": [], "edges": []}


def test_service_view_by_version_and_caller_as_its_servers_saw_it() -> None:
    view = service(canary(), "shop", "reviews")
    assert view["hosts"] == ["reviews.shop.svc.cluster.local"]
    assert view["summary"]["requests"] == 110
    assert view["summary"]["success"] == pytest.approx(105 / 110)
    versions = {v["workload"]: v for v in view["versions"]}
    assert versions["reviews-v2"]["success"] == 0.5 and versions["reviews-v1"]["requests"] == 100
    callers = {c["caller"]: c for c in view["callers"]}
    assert callers.keys() == {"workload:shop/productpage", "unknown"}
    assert (callers["unknown"]["requests"], callers["unknown"]["mtls"]) == (10, 0.0)
    assert service(canary(), "shop", "ratings")["versions"] == []


async def test_without_a_metrics_source_the_page_says_how_to_set_one() -> None:
    app = monitoring.app(lambda: None)
    runner, port = await monitoring.start(app, "127.0.0.1:0")
    try:
        base = f"http://127.0.0.1:{port}/dashboard"

        def get(url: str) -> tuple[str, bytes]:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.headers["content-type"], r.read()

        kind, body = await asyncio.to_thread(get, base)
        assert kind.startswith("text/html") and b"/dashboard/static/dashboard.js" in body
        kind, body = await asyncio.to_thread(get, f"{base}/static/dashboard.js")
        assert b"/dashboard/api/graph" in body
        _, body = await asyncio.to_thread(get, f"{base}/api/graph")
        answer = json.loads(body)
        assert answer["nodes"] == [] and "--prometheus" in answer["message"]
        kind, _ = await asyncio.to_thread(get, f"{base}/service/shop/reviews")
        assert kind.startswith("text/html")
    finally:
        await runner.cleanup()

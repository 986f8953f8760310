"""The dashboard in a real headless Chromium, over a real local mesh with traffic: a
canary 90/10 whose new version fails half its requests, a second service, and a
caller without a sidecar. What the page draws is asserted from its DOM; screenshots
are kept as test artefacts (see browser.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from browser import Element, dom, parse, screenshot
from harness import Harness, istio, namespace, pod, service
from promserver import prometheus

pytestmark = pytest.mark.envoy

RATINGS = "ratings.shop.svc.cluster.local"


def api(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        body: dict[str, Any] = json.load(r)
    return body


async def until(url: str, accept: Callable[[dict[str, Any]], bool], tries: int = 60) -> None:
    """Poll the JSON API as the page does, until it shows what `accept` wants."""
    body: dict[str, Any] = {}
    for _ in range(tries):
        body = await asyncio.to_thread(api, url)
        if accept(body):
            return
        await asyncio.sleep(1)
    raise AssertionError(f"{url}: {json.dumps(body, indent=1)}")


def complete(expected_edges: set[str]) -> Callable[[dict[str, Any]], bool]:
    """Every expected edge is there with its latency (histograms arrive every 5 s)."""

    def accept(body: dict[str, Any]) -> bool:
        edges = {e["id"]: e for e in body.get("edges", [])}
        return expected_edges <= edges.keys() and all(
            edges[e]["p99"] is not None for e in expected_edges
        )

    return accept


@contextlib.asynccontextmanager
async def steady(*loads: Callable[[], Awaitable[Any]]) -> AsyncIterator[Callable[[], int]]:
    """Run the loads over and over (as a live mesh has traffic) until the block ends;
    yields how many rounds have run. The round under way finishes (no load process
    is left behind)."""
    rounds = 0
    stop = asyncio.Event()

    async def loop() -> None:
        nonlocal rounds
        while not stop.is_set():
            await asyncio.gather(*(load() for load in loads))
            rounds += 1
            await asyncio.sleep(0.3)

    task = asyncio.create_task(loop())
    try:
        yield lambda: rounds
    finally:
        stop.set()
        await task


def drawn(html: str) -> tuple[dict[str, Element], dict[str, Element]]:
    page = parse(html)
    nodes = {n.attrs["data-node"]: n for n in page.find("data-node")}
    edges = {e.attrs["data-edge"]: e for e in page.find("data-edge")}
    return nodes, edges


def number(element: Element, attr: str) -> float:
    value = element.attrs[attr]
    assert value != "", f"{attr} missing on {element.attrs}"
    return float(value)


def shop(harness: Harness) -> tuple[str, str, str, str]:
    """productpage → reviews (v1 90% / v2 10%, v2 always answers 500) and
    → ratings; returns the IPs of productpage, reviews-v1, -v2, ratings-v1."""
    client, v1, v2, ratings = (harness.ip(h) for h in (70, 71, 72, 73))
    harness.backend("reviews-v1", v1, 9080)
    harness.backend("reviews-v2", v2, 9080, status=500)
    harness.backend("ratings-v1", ratings, 9080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
        service("ratings", "shop", {"app": "ratings"}, (9080,)),
        pod("productpage-v1", "shop", client, {"app": "productpage", "version": "v1"}),
        pod("reviews-v1", "shop", v1, {"app": "reviews", "version": "v1"}, (9080,)),
        pod("reviews-v2", "shop", v2, {"app": "reviews", "version": "v2"}, (9080,)),
        pod("ratings-v1", "shop", ratings, {"app": "ratings", "version": "v1"}, (9080,)),
        istio(
            "DestinationRule",
            "reviews",
            "shop",
            {
                "host": "reviews",
                "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")],
            },
        ),
        istio(
            "VirtualService",
            "reviews",
            "shop",
            {
                "hosts": ["reviews"],
                "http": [
                    {
                        "route": [
                            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                            {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10},
                        ]
                    }
                ],
            },
        ),
    )
    return client, v1, v2, ratings


CANARY_EDGES = {
    "workload:shop/productpage-v1->service:shop/reviews",
    "service:shop/reviews->workload:shop/reviews-v1",
    "service:shop/reviews->workload:shop/reviews-v2",
}


async def test_graph_shows_the_canary_its_errors_mtls_and_a_caller_without_sidecar(
    harness: Harness,
) -> None:
    client, _, _, ratings = shop(harness)
    await harness.start()
    assert harness.mesh is not None and harness.mesh.monitoring
    base = f"http://{harness.mesh.monitoring}/dashboard"

    async def plaintext_caller() -> None:  # no sidecar: straight to ratings' inbound port
        for _ in range(5):
            r = await harness.direct(f"{ratings}:15006", "/", {"host": f"{RATINGS}:9080"})
            assert r.status == 200

    expected_edges = CANARY_EDGES | {
        "workload:shop/productpage-v1->service:shop/ratings",
        "unknown->service:shop/ratings",
        "service:shop/ratings->workload:shop/ratings-v1",
    }
    start = time.monotonic()
    async with steady(
        lambda: harness.split(client, "http://reviews.shop:9080/", 60),
        lambda: harness.split(client, "http://ratings.shop:9080/", 20),
        plaintext_caller,
    ) as rounds:
        await until(f"{base}/api/graph", complete(expected_edges))
        html = await asyncio.to_thread(dom, base)
        sent_per_second = rounds() / (time.monotonic() - start)
        await asyncio.to_thread(screenshot, base, "dashboard-graph.png")
        service_html = await asyncio.to_thread(dom, f"{base}/service/shop/reviews")
        await asyncio.to_thread(screenshot, f"{base}/service/shop/reviews", "dashboard-reviews.png")

    nodes, edges = drawn(html)
    assert set(nodes) == {
        "workload:shop/productpage-v1",
        "service:shop/reviews",
        "service:shop/ratings",
        "workload:shop/reviews-v1",
        "workload:shop/reviews-v2",
        "workload:shop/ratings-v1",
        "unknown",
    }
    assert nodes["workload:shop/reviews-v2"].attrs["data-version"] == "v2"
    assert nodes["service:shop/reviews"].attrs["data-kind"] == "service"
    assert set(edges) == expected_edges

    # Rates: the load's own pace (rounds of 60 reviews and 20 ratings requests), within
    # a factor of two: rounds are bursts and the window slides.
    reviews = edges["workload:shop/productpage-v1->service:shop/reviews"]
    assert 60 * sent_per_second / 2 <= number(reviews, "data-rps") <= 60 * sent_per_second * 2
    ratings_rps = number(edges["workload:shop/productpage-v1->service:shop/ratings"], "data-rps")
    assert ratings_rps == pytest.approx(number(reviews, "data-rps") / 3, rel=0.5)

    # The canary: v2 takes about 10% of reviews and fails all of it; v1 never fails.
    to_v1 = edges["service:shop/reviews->workload:shop/reviews-v1"]
    to_v2 = edges["service:shop/reviews->workload:shop/reviews-v2"]
    requests = number(reviews, "data-rps") * 10  # ≥ a few hundred in the window
    bound = 5 * math.sqrt(0.09 / requests) + 0.01
    assert number(to_v2, "data-share") == pytest.approx(0.1, abs=bound)
    assert number(to_v1, "data-share") + number(to_v2, "data-share") == pytest.approx(1.0)
    assert number(to_v2, "data-error-rate") == 1
    assert number(to_v1, "data-error-rate") == 0
    assert number(reviews, "data-error-rate") == pytest.approx(0.1, abs=bound)
    assert "bad" in reviews.attrs["class"].split()  # ≥ 5% failing: drawn red
    for edge in edges.values():
        assert 0 < number(edge, "data-p99") < 1000

    # Mutual TLS between sidecars (a padlock); none from the caller without a sidecar,
    # so not all of what ratings-v1 serves is.
    mtls = {e for e, el in edges.items() if el.find("data-padlock")}
    assert mtls == {
        "workload:shop/productpage-v1->service:shop/reviews",
        "workload:shop/productpage-v1->service:shop/ratings",
        "service:shop/reviews->workload:shop/reviews-v1",
        "service:shop/reviews->workload:shop/reviews-v2",
    }
    assert {e: el.attrs["data-mtls"] for e, el in edges.items() if e not in mtls} == {
        "unknown->service:shop/ratings": "false",
        "service:shop/ratings->workload:shop/ratings-v1": "false",
    }
    # What a reader sees on the canary edge: its share, rate, failures and latency.
    share, health = (to_v2.find("data-label")[i].texts() for i in (0, 1))
    # The label shows the edge's own share (its value is checked against the split above).
    shown = re.fullmatch(r"([\d.]+)% · [\d.]+ rps", share)
    assert shown is not None, share
    assert float(shown.group(1)) == pytest.approx(number(to_v2, "data-share") * 100, abs=0.51)
    assert re.fullmatch(r"100% err · p99 [\d.]+ ms", health), health

    # The service's own page: by version and by caller.
    page = parse(service_html)
    rows = {r.attrs["data-row"]: r for r in page.find("data-row")}
    assert set(rows) == {"reviews-v1", "reviews-v2", "workload:shop/productpage-v1"}
    assert number(rows["reviews-v1"], "data-success") == 1.0
    assert number(rows["reviews-v2"], "data-success") == 0
    cards = {c.attrs["data-metric"]: c.texts() for c in page.find("data-metric")}
    assert set(cards) == {"success", "requests/s", "p50", "p95", "p99"}
    assert re.match(r"(8[5-9]|9[0-5])%", cards["success"]), cards  # about 90%
    assert "ms" in cards["p99"]


async def test_graph_from_prometheus_served_by_pilotfish_dashboard(
    harness: Harness, tmp_path: Path
) -> None:
    client, v1, v2, ratings = shop(harness)
    await harness.start()
    admins = [f"{ip}:15000" for ip in (client, v1, v2, ratings)]
    with prometheus(tmp_path, admins) as prom:
        args = ["--prometheus", prom.url, "--window", "15", "--listen", "127.0.0.1:0"]
        cli = subprocess.Popen(  # noqa: ASYNC220 (it runs alongside, read in a thread)
            [sys.executable, "-m", "pilotfish_operator.cli", "dashboard", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert cli.stdout is not None
            printed = await asyncio.to_thread(cli.stdout.readline)
            found = re.search(r"http://\S+/dashboard", printed)
            assert found, printed
            url = found.group(0)
            async with steady(lambda: harness.split(client, "http://reviews.shop:9080/", 60)):
                await until(f"{url}/api/graph", complete(CANARY_EDGES))
                html = await asyncio.to_thread(dom, url)
                await asyncio.to_thread(screenshot, url, "dashboard-prometheus.png")
        finally:
            cli.terminate()
            cli.wait(10)

    nodes, edges = drawn(html)
    assert set(nodes) == {
        "workload:shop/productpage-v1",
        "service:shop/reviews",
        "workload:shop/reviews-v1",
        "workload:shop/reviews-v2",
    }
    assert set(edges) == CANARY_EDGES
    assert all(e.find("data-padlock") for e in edges.values())
    to_v2 = edges["service:shop/reviews->workload:shop/reviews-v2"]
    assert number(to_v2, "data-share") == pytest.approx(0.1, abs=0.06)
    assert number(to_v2, "data-error-rate") == 1
    assert number(edges["service:shop/reviews->workload:shop/reviews-v1"], "data-error-rate") == 0
    assert number(edges["workload:shop/productpage-v1->service:shop/reviews"], "data-rps") > 1

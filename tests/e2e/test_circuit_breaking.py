"""Circuit breaking and outlier detection through real Envoy: concurrent load against
`maxConnections: 1, http1MaxPendingRequests: 1` gets Envoy's overflow 503s; a backend
answering 500 is ejected, traffic avoids it, and comes back once it recovers."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from harness import Harness, _request, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


def _mesh(h: Harness, *backends: int) -> None:
    h.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, (8080,)),
        pod("client", "shop", h.ip(10), {"app": "client"}),
        *(
            pod(f"web-{n}", "shop", h.ip(10 + n), {"app": "web"}, (8080,), inject=False)
            for n in backends
        ),
    )


async def concurrent(h: Harness, n: int) -> Counter[str]:
    """n requests at once, each on its own connection."""

    def one() -> str:
        r = _request(f"{h.ip(10)}:15001", "http://web:8080/", {}, "GET")
        return "overflow" if r.headers.get("x-envoy-overloaded") == "true" else str(r.status)

    return Counter(await asyncio.gather(*(asyncio.to_thread(one) for _ in range(n))))


async def test_connection_pool_limits_shed_concurrent_load(harness: Harness) -> None:
    harness.backend("web-1", harness.ip(11), 8080, delay=0.5)
    _mesh(harness, 1)
    await harness.start()
    assert await concurrent(harness, 10) == {"200": 10}  # Istio's default: no limits

    pool = {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}}
    dr = {"host": "web", "trafficPolicy": {"connectionPool": pool}}
    await harness.apply("dr.yaml", istio("DestinationRule", "web", "shop", dr))
    seen = await concurrent(harness, 10)
    assert seen["overflow"] >= 6, seen  # one in flight, one queued: the rest shed at once
    assert seen["200"] >= 1, seen
    assert set(seen) <= {"200", "overflow"}, seen


async def test_outlier_detection_ejects_a_failing_host_until_it_recovers(
    harness: Harness,
) -> None:
    harness.backend("web-1", harness.ip(11), 8080)
    harness.backend("web-2", harness.ip(12), 8080, status=500)
    _mesh(harness, 1, 2)
    await harness.start()
    url = "http://web:8080/"
    before = await harness.split(harness.ip(10), url, 40)
    assert before.get("web-2", 0) >= 10, before  # round robin keeps hitting the bad one

    outlier = {
        "consecutive5xxErrors": 2,
        "interval": "200ms",
        "baseEjectionTime": "2s",
        "maxEjectionPercent": 100,
    }
    dr = {"host": "web", "trafficPolicy": {"outlierDetection": outlier}}
    await harness.apply("dr.yaml", istio("DestinationRule", "web", "shop", dr))
    during = await harness.split(harness.ip(10), url, 60)
    assert during.get("web-2", 0) <= 2, during  # two 500s, then ejected
    assert during["web-1"] >= 58, during

    await harness.behave(f"{harness.ip(12)}:8080")  # recovered
    for _ in range(100):  # back after the ejection time (2 s) and a detection interval
        await asyncio.sleep(0.1)
        after = await harness.split(harness.ip(10), url, 10)
        if after.get("web-2"):
            break
    assert after.get("web-2", 0) >= 3, after

"""Retries through real Envoy, with Istio's semantics: the mesh default retries a 503
twice on every route that sets nothing; `attempts` and `retryOn` widen it; `attempts: 0`
turns it off; `perTryTimeout` bounds each try."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

N = 30


def _mesh(h: Harness) -> None:
    h.write(
        "mesh.yaml",
        namespace("app"),
        service("web", "app", {"app": "web"}, (8080,)),
        pod("client", "app", h.ip(10), {"app": "client"}),
        pod("web-1", "app", h.ip(11), {"app": "web"}, (8080,), inject=False),
    )


async def statuses(h: Harness, n: int = N) -> Counter[int]:
    out: Counter[int] = Counter()
    for _ in range(n):
        out[(await h.get(h.ip(10), "http://web:8080/")).status] += 1
    return out


def route(**retries: object) -> dict[str, object]:
    http: dict[str, object] = {"route": [{"destination": {"host": "web"}}]}
    if retries:
        http["retries"] = retries
    return {"hosts": ["web"], "http": [http]}


async def test_default_retry_masks_a_flaky_503_and_attempts_0_turns_it_off(
    harness: Harness,
) -> None:
    backend = f"{harness.ip(11)}:8080"
    harness.backend("web-1", harness.ip(11), 8080, pattern=(503, 503, 200))
    _mesh(harness)
    await harness.start()
    # No VirtualService: Istio's default policy (2 retries on 503) hides two failures in three.
    assert await statuses(harness) == {200: N}
    assert (await harness.stats(backend))["requests"] == 3 * N

    await harness.apply("vs.yaml", istio("VirtualService", "web", "app", route(attempts=0)))
    await harness.behave(backend, pattern=[503, 503, 200])
    seen = await statuses(harness)
    assert seen == {503: 2 * N // 3, 200: N // 3}  # every failure reaches the client
    assert (await harness.stats(backend))["requests"] == N


async def test_attempts_and_retry_on_cover_what_the_default_does_not(harness: Harness) -> None:
    backend = f"{harness.ip(11)}:8080"
    harness.backend("web-1", harness.ip(11), 8080, pattern=(500, 500, 200))
    _mesh(harness)
    await harness.start()
    # 500 is not in the default retryOn: two of three fail.
    assert await statuses(harness) == {500: 2 * N // 3, 200: N // 3}

    vs = route(attempts=3, retryOn="5xx")
    await harness.apply("vs.yaml", istio("VirtualService", "web", "app", vs))
    await harness.behave(backend, pattern=[500, 500, 200])
    assert await statuses(harness) == {200: N}

    # A status code in retryOn implies retriable-status-codes (Istio).
    vs = route(attempts=3, retryOn="500")
    await harness.apply("vs.yaml", istio("VirtualService", "web", "app", vs))
    await harness.behave(backend, pattern=[500, 500, 200])
    assert await statuses(harness) == {200: N}


async def test_per_try_timeout_retries_a_stalled_try(harness: Harness) -> None:
    backend = f"{harness.ip(11)}:8080"
    harness.backend("web-1", harness.ip(11), 8080, delay=1.0)
    _mesh(harness)
    vs = route(attempts=2, perTryTimeout="200ms", retryOn="5xx")
    harness.write("vs.yaml", istio("VirtualService", "web", "app", vs))
    await harness.start()
    started = time.monotonic()
    r = await harness.get(harness.ip(10), "http://web:8080/")
    elapsed = time.monotonic() - started
    # Each try gives up after 200 ms (Envoy answers 504 once all are spent).
    assert r.status == 504
    assert 0.5 < elapsed < 0.95, elapsed
    assert (await harness.stats(backend))["requests"] == 3

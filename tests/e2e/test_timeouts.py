"""Route timeouts: Istio's default is none (Envoy's own 15 s default is switched off);
`timeout` on an HTTP route bounds the whole request."""

from __future__ import annotations

import time

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


async def test_route_timeout_bounds_a_slow_backend_and_none_means_none(harness: Harness) -> None:
    client, slow = harness.ip(10), harness.ip(11)
    harness.backend("slow", slow, 8080, delay=1.5)
    harness.write(
        "mesh.yaml",
        namespace("app"),
        service("slow", "app", {"app": "slow"}, (8080,)),
        pod("client", "app", client, {"app": "client"}),
        pod("slow-1", "app", slow, {"app": "slow"}, (8080,)),
    )
    await harness.start()

    # No VirtualService: the request waits for the slow backend.
    started = time.monotonic()
    r = await harness.get(client, "http://slow:8080/")
    assert r.status == 200 and r.served_by == "slow"
    assert time.monotonic() - started >= 1.4

    vs = {
        "hosts": ["slow"],
        "http": [{"timeout": "300ms", "route": [{"destination": {"host": "slow"}}]}],
    }
    await harness.apply("vs.yaml", istio("VirtualService", "slow", "app", vs))
    started = time.monotonic()
    r = await harness.get(client, "http://slow:8080/")
    elapsed = time.monotonic() - started
    assert r.status == 504, r.body
    assert elapsed < 1.4  # cut off by the route timeout, not by the backend answering

"""Fault injection through real Envoy: a 50 % abort lands within statistical bounds, a
delay shows in measured latency, a gRPC abort carries its status, and only the route
that asks for it is affected."""

from __future__ import annotations

import math
import time

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

N = 400


async def test_abort_delay_and_grpc_status_on_the_matching_route_only(
    harness: Harness,
) -> None:
    client = harness.ip(10)
    harness.backend("ratings-1", harness.ip(11), 9080)
    vs = {
        "hosts": ["ratings"],
        "http": [
            {
                "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50}}},
                "route": [{"destination": {"host": "ratings"}}],
            },
            {
                "match": [{"headers": {"end-user": {"exact": "slow"}}}],
                "fault": {"delay": {"fixedDelay": "500ms", "percentage": {"value": 100}}},
                "route": [{"destination": {"host": "ratings"}}],
            },
            {
                "match": [{"headers": {"end-user": {"exact": "grpc"}}}],
                "fault": {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}},
                "route": [{"destination": {"host": "ratings"}}],
            },
            {"route": [{"destination": {"host": "ratings"}}]},
        ],
    }
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("ratings", "shop", {"app": "ratings"}, (9080,)),
        pod("client", "shop", client, {"app": "client"}),
        pod("ratings-1", "shop", harness.ip(11), {"app": "ratings"}, (9080,), inject=False),
        istio("VirtualService", "ratings", "shop", vs),
    )
    await harness.start()

    url = "http://ratings:9080/"
    counts = await harness.split(client, url, N, {"end-user": "jason"})
    aborted = counts.get("status 503", 0)
    assert aborted + counts.get("ratings-1", 0) == N, counts
    sigma = math.sqrt(N * 0.5 * 0.5)
    assert abs(aborted - N / 2) < 5 * sigma, counts  # 50 % within 5 sigma

    # Other routes of the same host: untouched.
    assert await harness.split(client, url, 100, {"end-user": "mary"}) == {"ratings-1": 100}

    started = time.monotonic()
    r = await harness.get(client, url, {"end-user": "slow"})
    # Envoy's timer and ours differ by a millisecond or so: bounds with margin.
    assert r.status == 200 and time.monotonic() - started >= 0.45
    started = time.monotonic()
    r = await harness.get(client, url)
    assert r.status == 200 and time.monotonic() - started < 0.3

    # A gRPC client (content-type application/grpc) gets the gRPC status.
    r = await harness.get(client, url, {"end-user": "grpc", "content-type": "application/grpc"})
    assert r.headers.get("grpc-status") == "14", (r.status, r.headers)
    assert r.served_by is None  # answered by the sidecar, not the backend

"""Weighted routing through real Envoy: what a client observes during a canary."""

from __future__ import annotations

import math

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

N = 1000


def within(count: int, n: int, share: float) -> bool:
    """Within 5 standard deviations of the binomial mean: never flaky, still tight."""
    sd = math.sqrt(n * share * (1 - share))
    return abs(count - n * share) <= 5 * sd


def route(v1: int, v2: int) -> dict[str, object]:
    return istio(
        "VirtualService",
        "web",
        "shop",
        {
            "hosts": ["web"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "web", "subset": "v1"}, "weight": v1},
                        {"destination": {"host": "web", "subset": "v2"}, "weight": v2},
                    ]
                }
            ],
        },
    )


# Scoped sidecars (the default, Delta xDS), and every service sent over each protocol.
@pytest.mark.parametrize(
    ("delta", "on_demand"),
    [(True, True), (False, False), (True, False)],
    ids=["scoped", "sotw", "delta"],
)
async def test_canary_split_follows_each_edit(
    harness: Harness, delta: bool, on_demand: bool
) -> None:
    client, v1, v2 = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("web-v1", v1, 8080)
    harness.backend("web-v2", v2, 8080)
    harness.write(
        "base.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, (8080,)),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-v1", "shop", v1, {"app": "web", "version": "v1"}, (8080,)),
        pod("web-v2", "shop", v2, {"app": "web", "version": "v2"}, (8080,)),
        istio(
            "DestinationRule",
            "web",
            "shop",
            {
                "host": "web",
                "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")],
            },
        ),
    )
    harness.write("vs.yaml", route(90, 10))
    await harness.start(delta=delta, on_demand=on_demand)

    counts = await harness.split(client, "http://web:8080/", N)
    assert counts["web-v1"] + counts["web-v2"] == N, counts
    assert within(counts["web-v2"], N, 0.10), counts

    await harness.apply("vs.yaml", route(50, 50))
    counts = await harness.split(client, "http://web.shop:8080/", N)
    assert counts["web-v1"] + counts["web-v2"] == N, counts
    assert within(counts["web-v2"], N, 0.50), counts

    await harness.apply("vs.yaml", route(0, 100))
    counts = await harness.split(client, "http://web.shop.svc.cluster.local:8080/", 200)
    assert counts == {"web-v2": 200}


async def test_service_without_virtualservice_round_robins_ready_endpoints(
    harness: Harness,
) -> None:
    client = harness.ip(10)
    ips = [harness.ip(20 + i) for i in range(3)]
    for i, ip in enumerate(ips):
        harness.backend(f"api-{i}", ip, 9000)
    harness.write(
        "base.yaml",
        namespace("shop"),
        service("api", "shop", {"app": "api"}, {80: 9000}),
        pod("client", "shop", client, {"app": "client"}),
        *(pod(f"api-{i}", "shop", ip, {"app": "api"}, (9000,)) for i, ip in enumerate(ips)),
    )
    await harness.start()
    counts = await harness.split(client, "http://api/", 300)
    # Round robin over three endpoints: an even share each, give or take the
    # order Envoy's workers picked them up in.
    assert sorted(counts) == ["api-0", "api-1", "api-2"], counts
    assert all(90 <= c <= 110 for c in counts.values()), counts

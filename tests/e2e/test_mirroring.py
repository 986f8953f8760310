"""Mirroring through real Envoy: the mirror backend receives copies with Istio's
`-shadow` host, in the share asked for, and its answers never reach the client."""

from __future__ import annotations

import asyncio
import math

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


async def test_mirror_gets_shadow_copies_and_the_client_only_the_primary(
    harness: Harness,
) -> None:
    client, web, audit = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("web-1", web, 8080)
    harness.backend("audit-1", audit, 9000, status=500)  # its answers must not matter
    vs = {
        "hosts": ["web"],
        "http": [
            {
                "match": [{"headers": {"x-sample": {"exact": "half"}}}],
                "mirrors": [{"destination": {"host": "audit"}, "percentage": {"value": 50}}],
                "route": [{"destination": {"host": "web"}}],
            },
            {"mirror": {"host": "audit"}, "route": [{"destination": {"host": "web"}}]},
        ],
    }
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, (8080,)),
        service("audit", "shop", {"app": "audit"}, (9000,)),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-1", "shop", web, {"app": "web"}, (8080,), inject=False),
        pod("audit-1", "shop", audit, {"app": "audit"}, (9000,), inject=False),
        istio("VirtualService", "web", "shop", vs),
    )
    await harness.start()

    assert await harness.split(client, "http://web:8080/", 40) == {"web-1": 40}

    async def mirrored(n: int) -> dict[str, object]:
        for _ in range(100):  # copies are sent asynchronously
            stats = await harness.stats(f"{audit}:9000")
            if stats["requests"] >= n:
                return stats
            await asyncio.sleep(0.05)
        return stats

    stats = await mirrored(40)
    assert stats["requests"] == 40
    hosts = stats["hosts"]
    assert isinstance(hosts, dict) and list(hosts) == ["web-shadow:8080"], hosts
    assert (await harness.stats(f"{web}:8080"))["requests"] == 40

    # Half of the requests of the other route (within 5 sigma of 400).
    await harness.behave(f"{audit}:9000", status=500)  # zero the counters
    n = 400
    counts = await harness.split(client, "http://web:8080/", n, {"x-sample": "half"})
    assert counts == {"web-1": n}
    await asyncio.sleep(0.5)
    copies = (await harness.stats(f"{audit}:9000"))["requests"]
    assert abs(copies - n / 2) < 5 * math.sqrt(n / 4), copies

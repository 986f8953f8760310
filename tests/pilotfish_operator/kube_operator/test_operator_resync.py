"""Losing the watch or restarting the operator never empties a sidecar's config."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, REVIEWS, objects
from proxy_view import Proxy

from conftest import VS, Start, create, free_port, wait_for
from pilotfish_xds.types import CLUSTER, ROUTE

pytestmark = pytest.mark.kmock(cls=Emulator)

V1 = f"outbound|9080|v1|{REVIEWS}"
V2 = f"outbound|9080|v2|{REVIEWS}"
ALL = f"outbound|9080||{REVIEWS}"


def canary(c: Any) -> bool:
    return "9080" in c.routes and c.weights("9080", "reviews") == {V1: 80, V2: 20}


async def test_a_restarted_operator_serves_nothing_until_it_has_a_full_view(
    k8s: Any, start_operator: Start
) -> None:
    for obj in objects():
        await create(k8s, obj)
    port = free_port()
    first = await start_operator(xds_port=port)
    async with Proxy(f"127.0.0.1:{port}", CLIENT_NODE, [ALL, V1, V2]) as proxy:
        await proxy.until(canary, what="canary")
    await start_operator.stop(first)  # type: ignore[attr-defined]

    # The next operator's listing of VirtualServices is slow: config built before it
    # completes would route `reviews` without the canary split.
    k8s.list_delays = {"virtualservices": 1.0}
    second = await start_operator(xds_port=port)
    assert not second.view.full.is_set()
    monitoring = f"http://127.0.0.1:{second.monitoring_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{monitoring}/healthz") as r:
            assert r.status == 200
        async with http.get(f"{monitoring}/readyz") as r:
            assert r.status == 503
            assert "VirtualService" in await r.text()
    async with Proxy(f"127.0.0.1:{port}", CLIENT_NODE, [ALL, V1, V2]) as proxy:
        config = await proxy.until(canary, what="canary after restart")
        await proxy.quiet()
    assert second.view.full.is_set()
    async with aiohttp.ClientSession() as http, http.get(f"{monitoring}/readyz") as r:
        assert r.status == 200
    # The first response of every type already held the full config.
    first_routes = next(n for t, n in proxy.history if t == ROUTE)
    first_clusters = next(n for t, n in proxy.history if t == CLUSTER)
    assert first_routes == 1 and first_clusters >= 3
    assert [t for t, _ in proxy.history].count(ROUTE) == 1, proxy.history
    assert {ALL, V1, V2} <= config.clusters


async def test_objects_deleted_while_not_watching_go_once_the_relisting_completes(
    k8s: Any, start_operator: Start
) -> None:
    for obj in objects():
        await create(k8s, obj)
    operator = await start_operator()
    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, [ALL, V1, V2]) as proxy:
        await proxy.until(canary, what="canary")
        # Deleted behind the operator's back: its watch never says so.
        await k8s.delete_unseen(VS, NS, "reviews")
        await proxy.quiet(0.5)
        assert canary(proxy.config), "nothing told the operator yet"
        assert operator.store.get(("VirtualService", NS, "reviews")) is not None

        k8s.list_delays = {"virtualservices": 0.5}
        await k8s.expire_watches(VS)  # 410 Gone: kopf must list again
        config = await proxy.until(
            lambda c: c.weights("9080", "reviews") == {ALL: 100}, what="VirtualService gone"
        )
        assert {ALL, V1, V2} <= config.clusters  # the DestinationRule is still there
    await wait_for(lambda: operator.store.get(("VirtualService", NS, "reviews")) is None)

"""The pipeline: debounced, merged rebuilds; snapshots for connected proxies only;
an edit re-encodes only what it changed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pilotfish_operator.pipeline import Pipeline
from pilotfish_operator.store import Store
from pilotfish_operator.translate import Options
from pilotfish_xds import types
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.status import StatusRegistry, StreamKind


def objects(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "ns", "labels": {"mesh-injection": "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": "ns", "labels": {"app": "client"}},
            "status": {"podIP": "127.0.0.2"},
        },
    ]
    for i in range(n):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{i}", "namespace": "ns"},
                "spec": {"selector": {"app": f"svc-{i}"}, "ports": [{"port": 80}]},
            }
        )
        out.append(virtual_service(i, 100))
    return out


def virtual_service(i: int, timeout_ms: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": f"svc-{i}", "namespace": "ns"},
        "spec": {
            "hosts": [f"svc-{i}"],
            "http": [
                {"timeout": f"{timeout_ms}ms", "route": [{"destination": {"host": f"svc-{i}"}}]}
            ],
        },
    }


@pytest.fixture
async def running() -> AsyncIterator[tuple[Store, SnapshotCache, Pipeline]]:
    store, cache = Store(), SnapshotCache()
    for obj in objects(20):
        store.apply(obj)
    pipeline = Pipeline(store, cache, debounce=0.1, max_delay=0.5)
    cache.stream_opened("client.ns", {"id": "client.ns"})
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0.05)
    try:
        yield store, cache, pipeline
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_burst_of_edits_is_merged_into_one_rebuild(running: Any) -> None:
    store, cache, pipeline = running
    assert pipeline.stats.rebuilds == 1
    first = cache.get("client.ns")
    assert first is not None
    for i in range(5):
        store.apply(virtual_service(i, 200))
        await asyncio.sleep(0.02)  # each edit well inside the 100 ms quiet window
    await asyncio.sleep(0.3)
    assert pipeline.stats.rebuilds == 2
    assert cache.get("client.ns") is not first


async def test_max_delay_bounds_a_never_ending_burst(running: Any) -> None:
    store, _, pipeline = running
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    while pipeline.stats.rebuilds == 1:
        store.apply(virtual_service(0, 300 + i))  # never quiet for 100 ms
        i += 1
        await asyncio.sleep(0.05)
        assert loop.time() - start < 2.0, "max_delay did not force a rebuild"
    assert loop.time() - start >= 0.45


async def test_an_edit_re_encodes_only_the_changed_virtual_host(running: Any) -> None:
    store, cache, pipeline = running
    misses = pipeline.encoder.misses
    before = {n: cache.get(n) for n in cache.nodes()}
    assert before, "no proxy to compare"
    store.apply(virtual_service(7, 250))
    await asyncio.sleep(0.3)
    assert pipeline.stats.rebuilds == 2
    assert pipeline.encoder.misses - misses == 1  # svc-7's virtual host, nothing else
    # Everything else is the very same encoding as before (reused, not rebuilt).
    for node, old in before.items():
        new = cache.get(node)
        assert old is not None and new is not None
        for t in old.type_urls():
            fresh = [n for n, r in new.resources(t).items() if old.resources(t).get(n) is not r]
            assert fresh in ([], ["outbound"]), (node, t, fresh)


async def test_snapshots_only_for_connected_proxies(running: Any) -> None:
    store, cache, pipeline = running
    store.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "other", "namespace": "ns"},
            "status": {"podIP": "127.0.0.3"},
        }
    )
    await asyncio.sleep(0.3)
    assert [p.id for p in pipeline.mesh.proxies] == ["client.ns", "other.ns"]
    assert cache.get("other.ns") is None
    cache.stream_opened("other.ns", {"id": "other.ns"})  # connects: built at once
    await asyncio.sleep(0.05)
    assert cache.get("other.ns") is not None


def test_incremental_translation_equals_translating_from_scratch() -> None:
    from pilotfish_operator.translate import Translator, translate

    store = Store()
    for obj in objects(6):
        store.apply(obj)
    translator = Translator()
    translator.translate(store)
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "svc-2", "namespace": "ns"},
        "spec": {
            "host": "svc-2",
            "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}},
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "svc-2-a",
            "namespace": "ns",
            "labels": {"app": "svc-2", "version": "v1"},
        },
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80}]}]},
        "status": {"podIP": "127.0.0.9"},
    }
    routes_to_2 = virtual_service(1, 100)
    routes_to_2["spec"]["http"][0]["route"] = [{"destination": {"host": "svc-2", "subset": "v1"}}]
    edits: list[tuple[str, Any]] = [
        ("apply", virtual_service(3, 999)),  # one host's routes
        ("apply", rule),  # svc-2's clusters, and routes of svc-1 once it points there
        ("apply", routes_to_2),  # svc-1 now depends on svc-2's rule (hash policy)
        ("apply", pod),  # svc-2's endpoints and subset
        ("apply", {**rule, "spec": {**rule["spec"], "trafficPolicy": None}}),  # svc-1 must follow
        ("delete", ("Pod", "ns", "svc-2-a")),
        ("delete", ("Service", "ns", "svc-4")),
        ("apply", {**pod, "metadata": {**pod["metadata"], "labels": {"app": "svc-2"}}}),
    ]
    for action, what in edits:
        if action == "apply":
            store.apply(what)
        else:
            store.delete(what)
        assert not store.errors()
        assert translator.translate(store).mesh == translate(store).mesh, (action, what)
    assert translator.reused > 0  # it did reuse something


@pytest.mark.parametrize("kind", ["delta", "sotw"])
async def test_scoped_only_over_delta(kind: StreamKind) -> None:
    """`Options(on_demand=True)`: a Delta sidecar gets the catalogue and no HTTP
    service up front; one on State of the World (VHDS needs Delta) gets everything."""
    store, cache, status = Store(), SnapshotCache(), StatusRegistry()
    for obj in objects(3):
        store.apply(obj)
    pipeline = Pipeline(store, cache, Options(on_demand=True), status=status)
    status.stream_opened("client.ns", kind, "peer")
    cache.stream_opened("client.ns", {"id": "client.ns"})
    pipeline.rebuild()
    snapshot = cache.get("client.ns")
    assert snapshot is not None
    held = [n for n in snapshot.resources(types.CLUSTER) if n.startswith("outbound|")]
    if kind == "delta":
        assert snapshot.on_demand is not None and held == []
        assert "outbound|80||svc-1.ns.svc.cluster.local" in snapshot.on_demand.clusters
    else:
        assert snapshot.on_demand is None and len(held) == 3

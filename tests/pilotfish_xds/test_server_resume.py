"""A proxy that reconnects (to this server or another replica) saying what it holds is
sent only what differs: SotW by the request's version_info, Delta by its
initial_resource_versions. Later changes are pushed as usual."""

from __future__ import annotations

from adsclient import DeltaClient, Running, SotwClient
from test_server import NODE, names, poll, snapshot

from pilotfish_xds.types import CLUSTER, ENDPOINT, LISTENER


async def test_sotw_reconnect_with_the_current_version_gets_nothing(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    version = xds.cache.get(NODE).version(CLUSTER)  # type: ignore[union-attr]
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER, version=version)  # no nonce: a new stream
        await client.expect_nothing()
        node = xds.status.node(NODE)
        assert node.types[CLUSTER].acked_version == version
        assert xds.status.pushes[CLUSTER] == 0

        # A change is pushed, and its ACK is matched as usual.
        xds.cache.set(NODE, snapshot(tag="2"))
        pushed = await client.recv()
        assert names(pushed) == ["a", "b"] and pushed.version_info != version
        await client.ack(pushed)
        await poll(lambda: node.types[CLUSTER].acked_version == pushed.version_info)


async def test_sotw_reconnect_with_another_version_gets_the_current_one(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER, version="an-older-version")
        response = await client.recv()
        assert names(response) == ["a", "b"]
        assert response.version_info == xds.cache.get(NODE).version(CLUSTER)  # type: ignore[union-attr]


async def test_sotw_reconnect_before_the_snapshot_exists(xds: Running) -> None:
    """A replica builds a proxy's snapshot when it connects: the comparison waits."""
    async with SotwClient(xds.address, NODE) as client:
        current = snapshot()
        await client.request(CLUSTER, version=current.version(CLUSTER))
        await client.request(LISTENER, version="stale")
        xds.cache.set(NODE, current)
        response = await client.recv()  # the listener only: clusters are current
        assert response.type_url == LISTENER
        await client.expect_nothing()


async def test_sotw_held_listeners_still_wait_for_changed_clusters(xds: Running) -> None:
    current = snapshot()
    xds.cache.set(NODE, current)
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER, version="stale")
        await client.request(LISTENER, version=current.version(LISTENER))
        clusters = await client.recv()
        assert clusters.type_url == CLUSTER
        await client.expect_nothing()  # the listener held back, then found current
        await client.ack(clusters)
        await client.expect_nothing()
        node = xds.status.node(NODE)
        await poll(lambda: node.types[LISTENER].acked_version == current.version(LISTENER))


async def test_delta_reconnect_gets_only_what_differs(xds: Running) -> None:
    current = snapshot()
    xds.cache.set(NODE, current)
    held = {n: r.hash for n, r in current.resources(CLUSTER).items()}
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(CLUSTER, initial_versions=held)
        await client.expect_nothing()
        node = xds.status.node(NODE)
        assert node.types[CLUSTER].acked_version == current.version(CLUSTER)
        endpoints = {n: r.hash for n, r in current.resources(ENDPOINT).items()}
        await client.request(
            ENDPOINT, subscribe=["a", "b", "c"], initial_versions={**endpoints, "a": "old"}
        )
        response = await client.recv()
        assert [r.name for r in response.resources] == ["a"]
        assert not response.removed_resources
        await client.ack(response)

        xds.cache.set(NODE, snapshot(clusters=("a",)))
        pushed = await client.recv()
        assert pushed.type_url == CLUSTER
        assert (pushed.resources, pushed.removed_resources) == ([], ["b"])

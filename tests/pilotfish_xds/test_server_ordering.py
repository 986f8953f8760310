"""Ordering between types and retrying a rejection once its cause is gone (issue 6).

A proxy that is slow to apply clusters must never be sent a listener or route that
names one of them before it has answered the clusters; a listener it rejected because
a cluster was missing is offered again once that cluster has been acknowledged, with
backoff and a bounded number of times; a rejection of plainly invalid config stands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from adsclient import DeltaClient, Running, SotwClient, running
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from test_server import NODE, names, poll, snapshot

from pilotfish_xds.codec import encode
from pilotfish_xds.protocol import Backoff
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

FAST = Backoff(first=0.05, factor=2.0, cap=0.2, retries=3)


@pytest.fixture
async def fast_xds() -> AsyncIterator[Running]:
    async with running(backoff=FAST) as server:
        yield server


def with_clusters(base: Snapshot, **alt: str) -> Snapshot:
    """`base` with each named cluster's content changed."""
    types = {t: list(base.resources(t).values()) for t in base.type_urls()}
    types[CLUSTER] = [
        encode(n, Cluster(name=n, alt_stat_name=alt.get(n, ""))) for n in base.resources(CLUSTER)
    ]
    return Snapshot(types)


async def test_listener_waits_for_a_slow_cluster_ack_sotw(xds: Running) -> None:
    """Envoy (after its initial-fetch timeout) asks for listeners while its clusters
    still warm: the listener is held until the clusters are acknowledged."""
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        clusters = await client.recv()
        await client.request(ENDPOINT, ["a", "b"])
        await client.ack(await client.recv(), ["a", "b"])
        await client.request(LISTENER)
        await client.expect_nothing(0.5)  # clusters not acknowledged yet: no listener
        await client.ack(clusters)
        listeners = await client.recv()
        assert listeners.type_url == LISTENER
        assert names(listeners) == ["l1"]
        await client.ack(listeners)
        await client.request(ROUTE, ["r1"])
        await client.ack(await client.recv(), ["r1"])
        node = xds.status.node(NODE)
        await poll(lambda: node.types[ROUTE].acked_version != "")
        assert xds.status.nacks_total == 0

        # A push changing clusters and listeners: listeners follow the cluster ACK.
        xds.cache.set(NODE, snapshot(tag="v2"))
        assert (await client.recv()).type_url == CLUSTER
        pushed = await client.recv()
        assert pushed.type_url == ENDPOINT
        await client.expect_nothing(0.3)
        await client.ack(pushed, ["a", "b"])
        await client.expect_nothing(0.3)  # endpoints are not what listeners wait for


async def test_listener_waits_for_a_slow_cluster_ack_delta(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        clusters = await client.recv()
        await client.request(LISTENER)
        await client.expect_nothing(0.5)
        await client.ack(clusters)
        listeners = await client.recv()
        assert listeners.type_url == LISTENER
        assert [r.name for r in listeners.resources] == ["l1"]


async def test_a_rejected_cluster_answers_too(xds: Running) -> None:
    """A NACK is an answer: listeners are not held forever behind bad clusters."""
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        clusters = await client.recv()
        await client.request(LISTENER)
        await client.expect_nothing(0.3)
        await client.nack(clusters, "bad cluster")
        assert (await client.recv()).type_url == LISTENER


async def test_listener_rejected_for_a_missing_cluster_is_retried_once_it_is_acked(
    fast_xds: Running,
) -> None:
    xds = fast_xds
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        bad_clusters = await client.recv()
        await client.request(LISTENER)
        await client.nack(bad_clusters, "cluster b: invalid")
        listeners = await client.recv()
        await client.nack(listeners, "route: unknown cluster 'b'")
        await client.expect_nothing(0.5)  # nothing changed on the proxy: no retry yet

        # The cluster is fixed; the listener's content is not. Once the proxy has
        # acknowledged the fixed clusters, the listener it rejected is offered again.
        xds.cache.set(NODE, with_clusters(snapshot(), b="fixed"))
        clusters = await client.recv()
        assert clusters.type_url == CLUSTER
        await client.expect_nothing(0.2)
        await client.ack(clusters)
        again = await client.recv()
        assert again.type_url == LISTENER
        assert again.version_info == listeners.version_info
        await client.ack(again)
        node = xds.status.node(NODE)
        await poll(lambda: node.types[LISTENER].acked_version == listeners.version_info)
        await client.expect_nothing(0.5)


async def test_invalid_config_is_not_retried_without_a_new_dependency(fast_xds: Running) -> None:
    xds = fast_xds
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        await client.ack(await client.recv())
        await client.request(LISTENER)
        listeners = await client.recv()
        await client.nack(listeners, "Proto constraint validation failed")
        await client.expect_nothing(1.0)  # well past every backoff step
        assert xds.status.node(NODE).types[LISTENER].nacks == 1


async def test_retries_are_bounded(fast_xds: Running) -> None:
    """A listener that keeps being rejected while clusters keep changing is offered
    again at most `retries` times, then the rejection stands."""
    xds = fast_xds
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        await client.ack(await client.recv())
        await client.request(LISTENER)
        rejected = await client.recv()
        await client.nack(rejected, "route: unknown cluster 'b'")
        offers = 0
        for round_ in range(FAST.retries + 2):
            xds.cache.set(NODE, with_clusters(snapshot(), b=f"v{round_}"))
            clusters = await client.recv()
            assert clusters.type_url == CLUSTER
            await client.ack(clusters)
            try:
                again = await client.recv(wait=1.0)
            except TimeoutError:
                continue
            assert again.type_url == LISTENER
            assert again.version_info == rejected.version_info
            offers += 1
            await client.nack(again, "route: unknown cluster 'b'")
        assert offers == FAST.retries
        node = xds.status.node(NODE)
        await poll(lambda: node.types[LISTENER].nacks == 1 + FAST.retries)


async def test_delta_rejection_retried_with_the_rejected_resources(fast_xds: Running) -> None:
    xds = fast_xds
    xds.cache.set(NODE, snapshot())
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        first = await client.recv()
        await client.request(LISTENER)
        await client.nack(first, "cluster b: invalid")
        listeners = await client.recv()
        await client.nack(listeners, "route: unknown cluster 'b'")
        await client.expect_nothing(0.3)
        xds.cache.set(NODE, with_clusters(snapshot(), b="fixed"))
        clusters = await client.recv()
        assert [r.name for r in clusters.resources] == ["b"]  # Delta: what changed
        await client.ack(clusters)
        again = await client.recv()
        assert again.type_url == LISTENER
        assert [r.name for r in again.resources] == ["l1"]

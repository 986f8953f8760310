"""The ADS server driven by an in-process client over a real gRPC channel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from adsclient import DeltaClient, Running, SotwClient
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.codec import Encoded, decode, encode
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

NODE = "sidecar~127.0.0.2~web-1.default~default.svc.cluster.local"


def snapshot(
    clusters: tuple[str, ...] = ("a", "b"),
    listeners: tuple[str, ...] = ("l1",),
    routes: tuple[str, ...] = ("r1",),
    tag: str = "",
) -> Snapshot:
    """Clusters with same-named endpoints; `tag` changes every resource's content."""
    return Snapshot(
        {
            CLUSTER: [encode(n, Cluster(name=n, alt_stat_name=tag)) for n in clusters],
            ENDPOINT: [encode(n, ClusterLoadAssignment(cluster_name=n + tag)) for n in clusters],
            LISTENER: [encode(n, Listener(name=n, stat_prefix=tag)) for n in listeners],
            ROUTE: [
                encode(n, RouteConfiguration(name=n, request_headers_to_remove=[tag]))
                for n in routes
            ],
        }
    )


def names(response: object) -> list[str]:
    """Names of the resources in a SotW response (decoded, not trusted from the server)."""
    out = []
    for item in response.resources:  # type: ignore[attr-defined]
        message = decode(item.type_url, item.value)
        out.append(getattr(message, "name", "") or message.cluster_name)
    return sorted(out)


async def poll(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_initial_request_answered_and_ack_not(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        response = await client.recv()
        assert response.type_url == CLUSTER
        assert names(response) == ["a", "b"]
        assert response.version_info == xds.cache.get(NODE).version(CLUSTER)  # type: ignore[union-attr]
        assert all(r.type_url == CLUSTER for r in response.resources)
        await client.ack(response)
        await client.expect_nothing()
        node = xds.status.get(NODE)
        assert node is not None
        await poll(lambda: node.types[CLUSTER].acked_version == response.version_info)
        assert node.types[CLUSTER].sent_nonce == response.nonce


async def test_eds_sends_exactly_requested_names_that_exist(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(ENDPOINT, ["a", "missing"])
        response = await client.recv()
        assert names(response) == ["a"]


async def test_nack_recorded_not_resent_and_next_change_pushed(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(LISTENER)
        first = await client.recv()
        await client.ack(first)
        node = xds.status.node(NODE)
        # Wait for the ACK: a push overtaking it would (rightly) make it stale.
        await poll(lambda: node.types[LISTENER].acked_version == first.version_info)
        xds.cache.set(NODE, snapshot(tag="bad"))
        bad = await client.recv()
        assert bad.version_info != first.version_info
        await client.nack(bad, "Proto constraint validation failed: bad listener")
        await client.expect_nothing()
        await poll(lambda: node.types[LISTENER].nacks == 1)
        nack = node.types[LISTENER].last_nack
        assert nack is not None
        assert nack.message == "Proto constraint validation failed: bad listener"
        assert nack.version == bad.version_info
        assert node.types[LISTENER].acked_version == first.version_info
        assert xds.status.nacks_total == 1
        listed = xds.status.to_dict()["nodes"][NODE]["types"][LISTENER]
        assert listed["last_nack"]["message"].endswith("bad listener")

        # An unrelated snapshot change (routes only) does not re-send the listener.
        xds.cache.set(NODE, Snapshot({**_types(snapshot(tag="bad")), ROUTE: []}))
        await client.expect_nothing()
        # A fixed listener is pushed.
        xds.cache.set(NODE, snapshot(tag="fixed"))
        fixed = await client.recv()
        assert fixed.type_url == LISTENER
        assert fixed.version_info not in (bad.version_info, first.version_info)


def _types(snap: Snapshot) -> dict[str, list[Encoded]]:
    return {t: list(snap.resources(t).values()) for t in snap.type_urls()}


async def test_stale_nonce_ignored(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        first = await client.recv()
        xds.cache.set(NODE, snapshot(clusters=("a", "b", "c")))
        second = await client.recv()
        # The ACK of the first response arrives late, and even asks for other names.
        await client.request(CLUSTER, ["zzz"], nonce=first.nonce, version=first.version_info)
        await client.expect_nothing()
        node = xds.status.get(NODE)
        assert node is not None
        assert node.types[CLUSTER].acked_version == ""
        await client.ack(second)
        await poll(lambda: node.types[CLUSTER].acked_version == second.version_info)


async def test_new_eds_names_riding_on_previous_nonce(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(ENDPOINT, ["a"])
        first = await client.recv()
        # ACK and subscription change in one request: the version did not change.
        await client.ack(first, ["a", "b"])
        second = await client.recv()
        assert names(second) == ["a", "b"]
        await client.ack(second, ["a", "b"])
        await client.expect_nothing()


async def test_a_cluster_push_is_followed_by_endpoints_and_nothing_else(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(ENDPOINT, ["a"])
        await client.ack(await client.recv(), ["a"])
        await client.request(CLUSTER)
        await client.ack(await client.recv())
        await client.request(ROUTE, ["r1"])
        await client.ack(await client.recv(), ["r1"])
        # Only cluster b and its endpoints change: CDS pushed, then EDS although "a" did
        # not change (Envoy re-warms the clusters it is sent and waits for endpoints);
        # routes did not change and are not pushed.
        snap = snapshot()
        changed = Snapshot(
            {
                **_types(snap),
                CLUSTER: [
                    encode("a", Cluster(name="a")),
                    encode("b", Cluster(name="b", alt_stat_name="x")),
                ],
                ENDPOINT: [
                    snap.resources(ENDPOINT)["a"],
                    encode("b", ClusterLoadAssignment(cluster_name="bx")),
                ],
            }
        )
        xds.cache.set(NODE, changed)
        assert (await client.recv()).type_url == CLUSTER
        endpoints = await client.recv()
        assert endpoints.type_url == ENDPOINT
        assert len(endpoints.resources) == 1
        await client.expect_nothing()


async def test_push_order_cds_eds_lds_rds(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        for type_url, wanted in ((ROUTE, ["r1"]), (LISTENER, []), (ENDPOINT, ["a"]), (CLUSTER, [])):
            await client.request(type_url, wanted)
            await client.ack(await client.recv(), wanted)
        xds.cache.set(NODE, snapshot(tag="v2"))
        clusters = await client.recv()
        order = [clusters.type_url, (await client.recv()).type_url]
        # Listeners and routes name clusters: they wait until the clusters are answered.
        await client.expect_nothing()
        await client.ack(clusters)
        order += [(await client.recv()).type_url for _ in range(2)]
        assert order == [CLUSTER, ENDPOINT, LISTENER, ROUTE]


async def test_no_snapshot_means_no_response_until_one_is_set(xds: Running) -> None:
    connected: list[tuple[str, dict[str, object]]] = []
    xds.cache.on_connect(lambda node, meta: connected.append((node, meta)))
    async with SotwClient(xds.address, NODE, {"app": "web"}) as client:
        await client.request(CLUSTER)
        await client.request(LISTENER)
        await client.expect_nothing()
        assert connected == [(NODE, {"id": NODE, "cluster": "test", "metadata": {"app": "web"}})]
        assert NODE in xds.cache.connected()
        xds.cache.set(NODE, snapshot())
        clusters = await client.recv()
        assert clusters.type_url == CLUSTER
        await client.ack(clusters)  # listeners follow once clusters are answered
        assert (await client.recv()).type_url == LISTENER


async def test_disconnect_callback_and_status(xds: Running) -> None:
    gone: list[str] = []
    xds.cache.on_disconnect(gone.append)
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        await client.recv()
        node = xds.status.get(NODE)
        assert node is not None
        assert [s.kind for s in node.streams.values()] == ["sotw"]
    await poll(lambda: gone == [NODE])
    assert not node.streams
    assert NODE not in xds.cache.connected()


async def test_reconnect_gets_current_snapshot(xds: Running) -> None:
    xds.cache.set(NODE, snapshot())
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        first = await client.recv()
        await client.ack(first)
    xds.cache.set(NODE, snapshot(clusters=("c",)))
    async with SotwClient(xds.address, NODE) as client:
        # Envoy re-sends its last accepted version and nonce on the new stream.
        await client.request(CLUSTER, nonce=first.nonce, version=first.version_info)
        response = await client.recv()
        assert names(response) == ["c"]


async def test_delta_add_and_remove(xds: Running) -> None:
    xds.cache.set(NODE, snapshot(clusters=("a", "b")))
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(CLUSTER)  # wildcard
        first = await client.recv()
        assert sorted(r.name for r in first.resources) == ["a", "b"]
        assert first.removed_resources == []
        assert first.type_url == CLUSTER
        await client.ack(first)
        await client.expect_nothing()
        node = xds.status.get(NODE)
        assert node is not None
        await poll(lambda: node.types[CLUSTER].acked_version == first.system_version_info)

        # b disappears, c appears, a unchanged: only the difference travels.
        xds.cache.set(NODE, snapshot(clusters=("a", "c")))
        second = await client.recv()
        assert [r.name for r in second.resources] == ["c"]
        assert second.removed_resources == ["b"]
        await client.nack(second, "cluster c: invalid")
        await poll(lambda: node.types[CLUSTER].nacks == 1)
        assert node.types[CLUSTER].last_nack.version == second.system_version_info  # type: ignore[union-attr]
        await client.expect_nothing()


async def test_delta_subscribe_unsubscribe_and_initial_versions(xds: Running) -> None:
    snap = snapshot(clusters=("a", "b", "c"))
    xds.cache.set(NODE, snap)
    have = {"a": snap.resources(ENDPOINT)["a"].hash}
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(ENDPOINT, subscribe=["a", "b"], initial_versions=have)
        first = await client.recv()
        assert [r.name for r in first.resources] == ["b"]  # a is already current
        await client.ack(first)
        await client.request(ENDPOINT, subscribe=["c"], unsubscribe=["a"])
        second = await client.recv()
        assert [r.name for r in second.resources] == ["c"]
        assert second.removed_resources == []
        await client.ack(second)
        # a changes but is no longer subscribed: nothing to send.
        changed = Snapshot(
            {
                ENDPOINT: [
                    encode("a", ClusterLoadAssignment(cluster_name="a2")),
                    snap.resources(ENDPOINT)["b"],
                    snap.resources(ENDPOINT)["c"],
                ]
            }
        )
        xds.cache.set(NODE, changed)
        await client.expect_nothing()


async def test_versions_stable_across_fresh_caches() -> None:
    one, two = SnapshotCache(), SnapshotCache()
    one.set(NODE, snapshot())
    two.set(NODE, snapshot())
    a, b = one.get(NODE), two.get(NODE)
    assert a is not None and b is not None
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        assert a.version(type_url) == b.version(type_url)
    assert snapshot(tag="x").version(CLUSTER) != a.version(CLUSTER)
    # Order of input does not matter.
    reordered = Snapshot({CLUSTER: list(reversed(list(a.resources(CLUSTER).values())))})
    assert reordered.version(CLUSTER) == a.version(CLUSTER)


def test_snapshot_consistency() -> None:
    snap = Snapshot(
        {ENDPOINT: [encode("a", ClusterLoadAssignment(cluster_name="a"))]},
        references={ENDPOINT: frozenset({"a", "b"}), ROUTE: frozenset({"r"})},
    )
    assert not snap.consistent()
    assert snap.missing() == {ENDPOINT: frozenset({"b"}), ROUTE: frozenset({"r"})}
    assert snapshot().consistent()

"""A proxy that stops reading delays no other: 1,000 ADS streams over real gRPC, one
of which subscribes and never reads again (its write blocks on HTTP/2 flow control).

Speed with and without the stuck stream is compared in bench/stuck_stream.py; here
the assertions are on progress: every other stream receives and acknowledges every
change while the stuck one's first response is still not taken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from adsclient import LightSotwClient, Reply, Running
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from test_server import poll

from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.codec import encode
from pilotfish_xds.server import serve
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.status import StatusRegistry
from pilotfish_xds.streams import Stream
from pilotfish_xds.types import CLUSTER

STREAMS = 1000
PER_CHANNEL = 25  # streams sharing one HTTP/2 connection, as a load of small clients
CHANGES = 3
STUCK = "stuck"
UNLIMITED = [("grpc.max_receive_message_length", -1)]


def small(k: int) -> Snapshot:
    return Snapshot({CLUSTER: [encode("c", Cluster(name="c", alt_stat_name=f"v{k}"))]})


def big(k: int) -> Snapshot:
    """About 12 MB of clusters: more than gRPC and the sockets buffer for a reader
    that never reads, so the server's write of it blocks."""
    pad = "x" * 200_000
    clusters = [Cluster(name=f"c{i}", alt_stat_name=f"v{k}-{pad}") for i in range(60)]
    return Snapshot({CLUSTER: [encode(c.name, c) for c in clusters]})


def stream_of(xds: Running, node: str) -> Stream:
    return next(s for s in xds.server.ads.streams() if s.node_id == node)


async def follow(client: LightSotwClient, seen: list[str]) -> None:
    """Subscribe to clusters; record and acknowledge every response, as Envoy does."""
    await client.request(CLUSTER)
    while True:
        reply = await client.recv()
        seen.append(reply.version)
        await client.ack(reply)


@contextlib.asynccontextmanager
async def channels(address: str, count: int) -> AsyncIterator[list[grpc.aio.Channel]]:
    opened = [grpc.aio.insecure_channel(address) for _ in range(count)]
    try:
        yield opened
    finally:
        for channel in opened:
            await channel.close()


@pytest.mark.timeout(600)
async def test_a_stuck_stream_delays_no_other(xds: Running) -> None:
    nodes = [f"proxy-{i}" for i in range(STREAMS - 1)]
    smalls = [small(k) for k in range(CHANGES + 1)]
    wanted = [s.version(CLUSTER) for s in smalls]
    for node in nodes:
        xds.cache.set(node, smalls[0])
    xds.cache.set(STUCK, big(0))
    seen: dict[str, list[str]] = {n: [] for n in nodes}

    def everyone_acked(version: str) -> bool:
        return all(xds.status.node(n).type(CLUSTER).acked_version == version for n in nodes)

    async with channels(xds.address, -(-len(nodes) // PER_CHANNEL)) as shared:
        followers = [
            asyncio.create_task(follow(LightSotwClient(shared[i // PER_CHANNEL], n), seen[n]))
            for i, n in enumerate(nodes)
        ]
        stuck_channel = grpc.aio.insecure_channel(xds.address, options=UNLIMITED)
        try:
            await poll(lambda: everyone_acked(wanted[0]), within=120.0)
            stuck = LightSotwClient(stuck_channel, STUCK)
            await stuck.request(CLUSTER)  # and reads nothing for now
            await poll(
                lambda: any(s.node_id == STUCK for s in xds.server.ads.streams()), within=120.0
            )
            await poll(lambda: stream_of(xds, STUCK).writing, within=120.0)

            for k in range(1, CHANGES + 1):
                for node in nodes:
                    xds.cache.set(node, smalls[k])
                xds.cache.set(STUCK, big(k))
                await poll(lambda k=k: everyone_acked(wanted[k]), within=120.0)  # type: ignore[misc]
                # ... while the stuck stream's first response is still not taken, and
                # what it owes is one push of whatever is latest, not one per change.
                assert stream_of(xds, STUCK).writing
                assert stream_of(xds, STUCK).queue.qsize() == 1

            assert all(versions == wanted for versions in seen.values())
            assert all(not f.done() for f in followers)  # no stream was closed on them
            stuck_status = xds.status.node(STUCK).type(CLUSTER)
            assert stuck_status.sent_version == big(0).version(CLUSTER)

            # Once it reads again it gets the blocked response, then the latest one
            # alone: the changes made meanwhile were merged, not queued.
            first = await asyncio.wait_for(stuck.recv(), 60)
            assert first.version == big(0).version(CLUSTER)
            await stuck.ack(first)
            latest = await asyncio.wait_for(stuck.recv(), 60)
            assert latest.version == big(CHANGES).version(CLUSTER)
            assert latest.resources == 60
            await stuck.ack(latest)
            await poll(lambda: stuck_status.acked_version == latest.version, within=120.0)
            assert xds.status.pushes[CLUSTER] == len(nodes) * (CHANGES + 1) + 2
        finally:
            for f in followers:
                f.cancel()
            await stuck_channel.close()


async def test_a_stuck_stream_does_not_hold_up_shutdown() -> None:
    """`stop` ends every stream; one whose proxy does not read is abandoned at once
    rather than waited for (`end_streams` would give it 5 s)."""
    status, cache = StatusRegistry(), SnapshotCache()
    cache.set(STUCK, big(0))
    server, port = await serve("127.0.0.1:0", cache, status)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=UNLIMITED)
    try:
        stuck = LightSotwClient(channel, STUCK)
        await stuck.request(CLUSTER)
        await poll(lambda: any(s.writing for s in server.ads.streams()), within=30)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(server.stop(grace=None), 30)
        assert loop.time() - started < 4.0
        assert not server.ads.streams()
        with pytest.raises((EOFError, grpc.aio.AioRpcError)):
            while True:  # what was buffered, then the end of the stream
                reply: Reply = await asyncio.wait_for(stuck.recv(), 30)
                assert reply.type_url == CLUSTER
    finally:
        await channel.close()

"""Push latency to many ADS streams, with and without one stream that never reads.

- Control plane: `serve()` ADS in this process; each proxy's snapshot holds 10
  clusters, replaced all at once per round (as a rebuild does).
- Clients: `--clients` light SotW streams (tests/pilotfish_xds/adsclient.py's
  LightSotwClient, 25 per HTTP/2 connection) in a separate process, each subscribing
  to clusters and acknowledging every response, as Envoy does.
- The stuck stream: a proxy of its own that subscribes, then never reads; its
  snapshot is about 12 MB, so the server's write to it blocks on HTTP/2 flow control
  (checked before each round that has it).

Measured per round: from replacing every snapshot (the stuck proxy's too) to each
stream's ACK of the new version (p50, p99, max over streams; then the median over
rounds). Rounds without and with the stuck stream alternate in the same server (it
is closed, then opened again; pairs ordered without-with, then with-without), so the
shared machine's drifting load and the position in a pair fall on both alike.

    python bench/stuck_stream.py [--clients 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from envoy_data_plane.envoy.config.cluster.v3 import Cluster

from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.codec import encode
from pilotfish_xds.server import serve
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.status import StatusRegistry
from pilotfish_xds.types import CLUSTER

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "pilotfish_xds"))
from adsclient import LightSotwClient  # noqa: E402

PER_CHANNEL = 25
SETTLE = 0.5
STUCK = "stuck"


class AckTimes(StatusRegistry):
    """The monotonic time of each node's first ACK of each version."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[tuple[str, str], float] = {}

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        self.first.setdefault((node_id, version), time.monotonic())
        super().acked(node_id, type_url, version)


def snapshot(k: int, clusters: int = 10, pad: int = 100) -> Snapshot:
    made = [Cluster(name=f"c{i}", alt_stat_name=f"v{k}-" + "x" * pad) for i in range(clusters)]
    return Snapshot({CLUSTER: [encode(c.name, c) for c in made]})


def big(k: int) -> Snapshot:
    """About 12 MB: more than gRPC and the sockets buffer for a proxy that does not read."""
    return snapshot(k, clusters=60, pad=200_000)


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def one_round(
    cache: SnapshotCache, status: AckTimes, nodes: list[str], k: int
) -> dict[str, float]:
    snap, stuck = snapshot(k), big(k)
    version = snap.version(CLUSTER)
    await asyncio.sleep(SETTLE)  # let what came before (a connection, a 12 MB write) settle
    # The collector's full pass lands every few rounds (every fourth, here) and costs a
    # round ~2x: run it now so it falls on no measured round.
    gc.collect()
    t0 = time.monotonic()
    for node in nodes:
        cache.set(node, snap)
    cache.set(STUCK, stuck)
    deadline = t0 + 120
    while any((n, version) not in status.first for n in nodes):
        if time.monotonic() > deadline:
            raise RuntimeError(f"round {k}: not every stream acknowledged within 120 s")
        await asyncio.sleep(0.005)
    latencies = [status.first[(n, version)] - t0 for n in nodes]
    return {
        "p50_ms": 1000 * quantile(latencies, 0.5),
        "p99_ms": 1000 * quantile(latencies, 0.99),
        "max_ms": 1000 * max(latencies),
    }


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "rounds": runs,
        **{f"median_{key}": statistics.median(r[key] for r in runs) for key in runs[0]},
    }


async def serve_and_measure(clients: int, count: int) -> dict[str, Any]:
    cache, status = SnapshotCache(), AckTimes()
    nodes = [f"proxy-{i}" for i in range(clients)]
    for node in nodes:
        cache.set(node, snapshot(0))
    cache.set(STUCK, big(0))
    server, port = await serve("127.0.0.1:0", cache, status)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--connect",
        f"127.0.0.1:{port}",
        "--clients",
        str(clients),
        stdin=asyncio.subprocess.PIPE,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},  # not the GOAWAY of the server's stop
    )
    assert proc.stdin is not None

    async def command(line: bytes, stuck: bool) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line)
        await proc.stdin.drain()
        deadline = time.monotonic() + 60
        while stuck != any(s.node_id == STUCK and s.writing for s in server.ads.streams()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stuck stream did not {line.decode().strip()}")
            await asyncio.sleep(0.01)

    try:
        version = snapshot(0).version(CLUSTER)
        deadline = time.monotonic() + 300
        while any((n, version) not in status.first for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the clients did not all connect within 300 s")
            await asyncio.sleep(0.05)
        # Alternate in pairs, ordered without-with then with-without, so the shared
        # machine's drifting load and the position in a pair fall on both alike.
        without, with_stuck = [], []
        stuck = False
        for i in range(2 * count):
            want = (i % 4) in (1, 2)
            if want != stuck:
                await command(b"stick\n" if want else b"free\n", stuck=want)
                stuck = want
            measured = await one_round(cache, status, nodes, 1 + i)
            if stuck:
                assert any(s.node_id == STUCK and s.writing for s in server.ads.streams())
            (with_stuck if stuck else without).append(measured)
        if not stuck:
            await command(b"stick\n", stuck=True)  # and stop the server with it stuck
        t0 = time.monotonic()
        await server.stop(grace=None)
        stop_s = time.monotonic() - t0
    finally:
        proc.stdin.close()
        await proc.wait()
    # Pairs measured next to each other: rounds 0-1, 2-3, ... of each list line up.
    ratios = [w["p99_ms"] / o["p99_ms"] for w, o in zip(with_stuck, without, strict=True)]
    return {
        "clients": clients,
        "without_stuck": summary(without),
        "with_stuck": summary(with_stuck),
        "median_p99_ratio_with_to_without": statistics.median(ratios),
        "server_stop_with_stuck_s": stop_s,
    }


async def follow(client: LightSotwClient) -> None:
    await client.request(CLUSTER)
    while True:
        await client.ack(await client.recv())


async def run_clients(address: str, clients: int) -> None:
    channels = [grpc.aio.insecure_channel(address) for _ in range(-(-clients // PER_CHANNEL))]
    tasks = [
        asyncio.create_task(follow(LightSotwClient(channels[i // PER_CHANNEL], f"proxy-{i}")))
        for i in range(clients)
    ]
    stuck: grpc.aio.Channel | None = None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"stick":  # a proxy of its own that subscribes, then never reads
            stuck = grpc.aio.insecure_channel(address)
            await LightSotwClient(stuck, STUCK).request(CLUSTER)
        elif line.strip() == b"free" and stuck is not None:
            await stuck.close(grace=None)  # the proxy goes away
            stuck = None
    for task in tasks:
        task.cancel()
    for channel in [*channels, *([stuck] if stuck else [])]:
        await channel.close(grace=None)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--connect", help=argparse.SUPPRESS)  # the client process
    args = p.parse_args()
    if args.connect:
        asyncio.run(run_clients(args.connect, args.clients))
        return
    json.dump(asyncio.run(serve_and_measure(args.clients, args.rounds)), sys.stdout)
    print()


if __name__ == "__main__":
    main()

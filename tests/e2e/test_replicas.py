"""Control-plane replicas: a sidecar whose replica goes away reconnects to another
one and is not sent again the config it already holds (versions are content
hashes, equal on every replica built from the same objects).

Two replicas listen on one address (SO_REUSEPORT, which gRPC sets), as pods behind
a Service do: the sidecar connects to A; B starts; A stops; the sidecar's reconnect
can only reach B.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

from pilotfish_operator.local.sidecars import default_envoy
from pilotfish_operator.pipeline import Pipeline
from pilotfish_operator.store import Store
from pilotfish_operator.translate import Options, proxy_id
from pilotfish_xds.bootstrap import bootstrap
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.server import XdsServer, serve
from pilotfish_xds.status import StatusRegistry

pytestmark = pytest.mark.envoy

NODE = proxy_id("shop", "client")


@dataclass
class Replica:
    store: Store
    cache: SnapshotCache
    status: StatusRegistry
    server: XdsServer
    port: int

    def in_sync(self) -> bool:
        """The sidecar is connected here and has acknowledged every type it uses."""
        snapshot, node = self.cache.get(NODE), self.status.get(NODE)
        if snapshot is None or node is None or not node.streams:
            return False
        used = [t for t in snapshot.type_urls() if t in node.types]
        return bool(used) and all(node.types[t].acked_version == snapshot.version(t) for t in used)


@contextlib.asynccontextmanager
async def replica(
    objects: list[dict[str, Any]], on_demand: bool, address: str
) -> AsyncIterator[Replica]:
    store = Store()
    for obj in objects:
        store.apply(obj)
    assert not store.errors(), store.errors()
    cache, status = SnapshotCache(), StatusRegistry()
    pipeline = Pipeline(store, cache, Options(local=True, on_demand=on_demand), debounce=0.05)
    task = asyncio.create_task(pipeline.run())
    server, port = await serve(address, cache, status)
    try:
        yield Replica(store, cache, status, server, port)
    finally:
        await server.stop(grace=None)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Any, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def envoy(h: Harness, client: str, port: int, delta: bool) -> Any:
    config = h.workdir / "client.bootstrap.json"
    labels = {"app": "client"}
    config.write_text(
        json.dumps(
            bootstrap(
                NODE,
                namespace="shop",
                pod="client",
                labels=labels,
                xds_host="127.0.0.1",
                xds_port=port,
                admin_host=client,
                delta=delta,
            )
        )
    )
    log = Path(h.workdir / "envoy.log")
    args = [default_envoy(), "-c", str(config), "--use-dynamic-base-id", "-l", "warning"]
    proc = subprocess.Popen([*args, "--log-path", str(log)], stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def edited(header: str) -> dict[str, Any]:
    return istio(
        "VirtualService",
        "web",
        "shop",
        {
            "hosts": ["web"],
            "http": [
                {
                    "headers": {"response": {"set": {"x-replica": header}}},
                    "route": [{"destination": {"host": "web"}}],
                }
            ],
        },
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("scoped", [False, True], ids=["sotw", "delta-scoped"])
async def test_reconnecting_to_another_replica_resends_nothing(
    harness: Harness, scoped: bool
) -> None:
    client, web = harness.ip(10), harness.ip(11)
    harness.backend("web-1", web, 8080)
    objects = [
        namespace("shop"),
        service("web", "shop", {"app": "web"}, (8080,)),
        service("api", "shop", {"app": "api"}, (8080,)),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-1", "shop", web, {"app": "web"}, (8080,), inject=False),
        edited("a"),
    ]
    async with replica(objects, scoped, "127.0.0.1:0") as a:
        with envoy(harness, client, a.port, delta=scoped):
            await until(a.in_sync)
            r = await harness.get(client, "http://web:8080/")
            assert (r.status, r.served_by, r.headers.get("x-replica")) == (200, "web-1", "a")
            await until(a.in_sync)  # a scoped sidecar has fetched `web` since
            assert sum(a.status.pushes.values()) > 0

            async with replica(objects, scoped, f"127.0.0.1:{a.port}") as b:
                assert b.port == a.port
                await a.server.stop(grace=None)  # the sidecar's replica goes away
                await until(b.in_sync)
                assert dict(b.status.pushes) == {}, "B re-sent config the sidecar holds"

                r = await harness.get(client, "http://web:8080/")
                assert (r.status, r.served_by, r.headers.get("x-replica")) == (200, "web-1", "a")

                # Later edits on B are pushed as usual.
                b.store.apply(edited("b"))
                await until(lambda: b.status.pushes.total() > 0)
                await until(b.in_sync)
                r = await harness.get(client, "http://web:8080/")
                assert (r.status, r.headers.get("x-replica")) == (200, "b")

"""`pilotfish local`: a directory of YAML in, a running mesh of real Envoys out.

One store, one pipeline, one ADS server (loopback), one Envoy per injected pod.
The state file tells scripts where everything is; it is written once every
sidecar has acknowledged its current config, and rewritten when that changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.ports import ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT
from pilotfish_xds.server import serve
from pilotfish_xds.status import StatusRegistry

from ..api import Pod
from ..pipeline import Pipeline
from ..sources.files import DirectorySource
from ..store import Store
from ..translate import Options
from ..translate.services import Workloads
from .sidecars import Sidecars, default_envoy

log = logging.getLogger(__name__)


class LocalMesh:
    def __init__(
        self,
        config: Path,
        *,
        state: Path | None = None,
        xds: str = "127.0.0.1:0",
        envoy: str | None = None,
        debounce: float = 0.1,
        workdir: Path | None = None,
        delta: bool = False,
    ) -> None:
        self.config = config
        self.state_path = state
        self.xds_address = xds
        self.envoy = envoy or default_envoy()
        self.store = Store()
        self.source = DirectorySource(config, self.store)
        self.cache = SnapshotCache()
        self.status = StatusRegistry()
        self.pipeline = Pipeline(self.store, self.cache, Options(local=True), debounce=debounce)
        self._workdir = workdir
        self.delta = delta
        """Sidecars use Delta ADS instead of State-of-the-World."""
        self.xds_port = 0
        self.state: dict[str, Any] = {}
        self.synced = asyncio.Event()
        """Set while every sidecar has acknowledged the current config."""

    @property
    def xds(self) -> str:
        return f"{self.xds_address.rsplit(':', 1)[0]}:{self.xds_port}"

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Run until cancelled; every process started here is stopped on the way out."""
        with contextlib.ExitStack() as stack:
            workdir = self._workdir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="pilotfish-local-"))
            )
            host = self.xds_address.rsplit(":", 1)[0]
            server, self.xds_port = await serve(self.xds_address, self.cache, self.status)
            log.info("xDS server on %s", self.xds)
            sidecars = Sidecars(
                self.envoy, workdir, host, self.xds_port, self.delta, on_start=self.status.forget
            )
            self.source.scan()
            tasks = [
                asyncio.create_task(self.pipeline.run(), name="pipeline"),
                asyncio.create_task(self.source.run(), name="config-source"),
                asyncio.create_task(self._supervise(sidecars, ready), name="sidecars"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await sidecars.stop_all()
                await server.stop(grace=None)

    async def _supervise(self, sidecars: Sidecars, ready: asyncio.Event | None) -> None:
        while True:
            await sidecars.reconcile(self.pipeline.mesh.proxies)
            synced = self.in_sync()
            if synced:
                self._write_state()
                self.synced.set()
                if ready is not None:
                    ready.set()
            else:
                self.synced.clear()
            await asyncio.sleep(0.05)

    async def wait_synced(self, after: int = -1) -> None:
        """Until the store has moved past generation `after` and every sidecar
        acknowledged the config built from it."""
        # ACKs land in the status registry, which has no events: poll it briefly.
        while self.store.generation == after or not self.in_sync():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def in_sync(self) -> bool:
        """Every sidecar acknowledged every type of its current snapshot, and the
        snapshots reflect the latest store."""
        if self.pipeline.built_generation != self.store.generation:
            return False
        for proxy in self.pipeline.mesh.proxies:
            snapshot = self.cache.get(proxy.id)
            node = self.status.get(proxy.id)
            if snapshot is None or node is None or not node.streams:
                return False
            for type_url in snapshot.type_urls():
                if not snapshot.resources(type_url):
                    continue  # Envoy does not subscribe to a type it has no use for
                if node.type(type_url).acked_version != snapshot.version(type_url):
                    return False
        return True

    def _write_state(self) -> None:
        workloads = Workloads.of(self.store)
        pods: dict[str, Any] = {}
        for (ns, name), pod in sorted(workloads.pods.items()):
            assert isinstance(pod, Pod)
            ip = pod.status.pod_ip if pod.status else None
            if not ip:
                continue
            entry: dict[str, Any] = {"ip": ip, "injected": (ns, name) in workloads.injected}
            if entry["injected"]:
                entry.update(
                    outbound=f"{ip}:{OUTBOUND_PORT}",
                    inbound=f"{ip}:{INBOUND_PORT}",
                    admin=f"{ip}:{ADMIN_PORT}",
                )
            pods[f"{ns}/{name}"] = entry
        state = {"xds": self.xds, "pods": pods}
        if state == self.state:
            return
        self.state = state
        if self.state_path is not None:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2) + "\n")
            tmp.replace(self.state_path)
            log.info("state written to %s", self.state_path)

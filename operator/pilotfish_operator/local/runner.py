"""`pilotfish local`: a directory of YAML in, a running mesh of real Envoys out.

One store, one pipeline, one ADS server (loopback), one Envoy per injected pod.
The state file tells scripts where everything is; it is written once every
sidecar has acknowledged its current config, and rewritten when that changes. A
sidecar that has not converged within `converge_timeout` is logged by name with the
reason, and the state file is written with it marked `"synced": false`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from pilotfish_xds import ir, types
from pilotfish_xds.bootstrap import XdsTls
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.ports import ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT
from pilotfish_xds.server import serve
from pilotfish_xds.status import StatusRegistry

from .. import meshstats, metrics, monitoring
from ..api import Pod
from ..dashboard.sources import Sidecars as SidecarTraffic
from ..pipeline import Pipeline
from ..security.ca import WORKLOAD_TTL, MeshCA
from ..security.issuer import Issuer
from ..security.pki import utcnow
from ..security.serving import ServingCert
from ..security.tokens import LocalTokens, TokenClaims
from ..security.xds_access import XdsAccess
from ..sources.files import DirectorySource
from ..store import Store
from ..translate import Options, proxy_id
from ..translate.services import Workloads
from .gateways import LocalGateways
from .sidecars import Sidecars, default_envoy

log = logging.getLogger(__name__)

XDS_NAME = "pilotfish.pilotfish-system.svc"
"""The name the control plane's xDS certificate carries and sidecars check."""


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
        converge_timeout: float = 60.0,
        cert_ttl: datetime.timedelta = WORKLOAD_TTL,
        monitoring: str | None = "127.0.0.1:0",
        on_demand: bool = True,
        gateway_subnet: str = "127.0.200",
    ) -> None:
        """`on_demand` (the default): sidecars are scoped (fetch each HTTP service on
        its first call; xds `translate/scoping.py`), which needs Delta xDS; off, every
        sidecar is sent every service (over Delta only with `delta`)."""
        self.config = config
        self.state_path = state
        self.xds_address = xds
        self.envoy = envoy or default_envoy()
        self.store = Store()
        self.source = DirectorySource(config, self.store)
        self.gateways = LocalGateways(self.store, gateway_subnet)
        """Gateway pods for the Gateway API Gateways no pod of the config serves, at
        `<gateway_subnet>.254` downwards."""
        self.cache = SnapshotCache()
        self.status = StatusRegistry()
        options = Options(local=True, on_demand=on_demand)
        # Local mode's CA lives only in this process: a restart re-keys every sidecar,
        # and no key is ever written to disk.
        ca = MeshCA.self_signed(options.trust_domain, utcnow())
        self.issuer = Issuer(ca, ttl=cert_ttl)
        self.tokens = LocalTokens()
        self.roots_file = Path()
        self.pipeline = Pipeline(
            self.store,
            self.cache,
            options,
            debounce=debounce,
            issuer=self.issuer,
            status=self.status,
        )
        self._workdir = workdir
        self.delta = delta or on_demand
        """Sidecars use Delta ADS instead of State-of-the-World."""
        self.xds_port = 0
        self.monitoring_address = monitoring
        """Where /metrics (the control plane's), /healthz, /readyz and the dashboard are
        served."""
        self.monitoring_port = 0
        self.state: dict[str, Any] = {}
        self.synced = asyncio.Event()
        """Set while every sidecar has acknowledged the current config."""
        self.converge_timeout = converge_timeout
        """Seconds a sidecar may lag before it is reported by name and the state file is
        written without it (marked unsynced), rather than waiting forever."""
        self.lagging: dict[str, str] = {}
        """Proxy id -> why it has not converged, once reported."""
        self._sidecars: Sidecars | None = None
        self._state_inputs: tuple[int, int, str] | None = None

    @property
    def monitoring(self) -> str | None:
        if not self.monitoring_address:
            return None
        return f"{self.monitoring_address.rsplit(':', 1)[0]}:{self.monitoring_port}"

    def _not_ready(self) -> str | None:
        return None if self.synced.is_set() else "sidecars are not in sync yet"

    @property
    def xds(self) -> str:
        return f"{self.xds_address.rsplit(':', 1)[0]}:{self.xds_port}"

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Run until cancelled; every process started here is stopped on the way out.

        `ready` is set once the state file is first written: when every sidecar holds
        its config, or `converge_timeout` after that stopped being true, with the
        sidecars that lag named."""
        async with contextlib.AsyncExitStack() as stack:
            workdir = self._workdir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="pilotfish-local-"))
            )
            host = self.xds_address.rsplit(":", 1)[0]
            # The xDS channel is TLS with a certificate from the mesh CA, and every
            # stream must prove (with its pod's token) the node it asks for.
            self.roots_file = workdir / "mesh-roots.pem"
            self.roots_file.write_bytes(self.issuer.ca.roots_pem)
            server, self.xds_port = await serve(
                self.xds_address,
                self.cache,
                self.status,
                credentials=ServingCert(lambda: self.issuer.ca, [XDS_NAME]).credentials(),
                authenticate=XdsAccess(self._verify, self.store, pod_must_be_known=True),
            )
            log.info("xDS server on %s (TLS, per-pod tokens)", self.xds)
            if self.monitoring_address:
                scrape = metrics.registry(self.pipeline, self.cache, self.status)
                # This process knows every sidecar: the dashboard reads them directly.
                traffic = SidecarTraffic(lambda: meshstats.sidecar_admins(self.state))
                runner, self.monitoring_port = await monitoring.start(
                    monitoring.app(self._not_ready, lambda: metrics.render(scrape), traffic),
                    self.monitoring_address,
                )
                stack.push_async_callback(runner.cleanup)
            sidecars = self._sidecars = Sidecars(
                self.envoy,
                workdir,
                host,
                self.xds_port,
                self.delta,
                on_start=self.status.forget,
                xds_tls=self._xds_tls,
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
        loop = asyncio.get_running_loop()
        behind_since: float | None = None
        while True:
            self.gateways.reconcile()
            await sidecars.reconcile(self.pipeline.mesh.proxies)
            if self.in_sync():
                behind_since = None
                self.lagging = {}
                self._write_state()
                self.synced.set()
                if ready is not None:
                    ready.set()
            else:
                self.synced.clear()
                now = loop.time()
                behind_since = now if behind_since is None else behind_since
                overdue = now - behind_since >= self.converge_timeout
                if overdue and self._report_lagging() and ready is not None:
                    ready.set()  # the state file is out: a waiting script goes on
            await asyncio.sleep(0.05)

    def _report_lagging(self) -> bool:
        """Name each sidecar that has not converged, once per reason, and write the
        state file with those marked, so a script waiting on it is not left hanging.
        False while the control plane itself is behind (nothing to blame a sidecar for)."""
        if self.pipeline.built_generation != self.store.generation:
            return False
        lagging = self.unconverged()
        for node_id, why in sorted(lagging.items()):
            if self.lagging.get(node_id) != why:
                log.error(
                    "sidecar %s has not converged after %.0f s: %s",
                    node_id,
                    self.converge_timeout,
                    why,
                )
        if lagging != self.lagging:
            self.lagging = lagging
            self._write_state()
        return True

    def unconverged(self) -> dict[str, str]:
        """Proxy id -> why it does not hold its current config."""
        out: dict[str, str] = {}
        for proxy in self.pipeline.mesh.proxies:
            why = self._behind(proxy.id)
            if why:
                out[proxy.id] = why
        return out

    def _behind(self, node_id: str) -> str:
        snapshot = self.cache.get(node_id)
        node = self.status.get(node_id)
        if snapshot is None or node is None or not node.streams:
            car = self._sidecars.running.get(node_id) if self._sidecars else None
            where = f" (Envoy log: {car.log_path})" if car else ""
            return f"not connected to the xDS server{where}"
        waiting = []
        for type_url in sorted(snapshot.type_urls()):
            # Envoy does not subscribe to a type it has no use for. A scoped sidecar
            # (on demand) asks for virtual hosts once its routes warm, and for endpoints
            # once it holds a cluster that needs them.
            unused = not snapshot.resources(type_url) or (
                snapshot.on_demand is not None and type_url == types.ENDPOINT
            )
            if unused and type_url not in node.types:
                continue
            if type_url == types.SECRET and type_url not in node.types:
                continue  # nothing references a secret yet (a gateway with no TLS in use)
            status = node.type(type_url)
            if status.acked_version == snapshot.version(type_url):
                continue
            short = type_url.rsplit(".", 1)[-1]
            nack = status.last_nack
            if nack is not None and nack.version == status.sent_version:
                return f"rejected its {short} config: {nack.message}"
            waiting.append(short)
        return f"has not acknowledged its {', '.join(waiting)} config" if waiting else ""

    def _xds_tls(self, proxy: ir.Proxy) -> XdsTls:
        """How `proxy`'s sidecar reaches this control plane: with its own token, in a
        file only this user reads (as the kubelet writes a projected token)."""
        account = proxy.identity.rsplit("/sa/", 1)[-1]
        token_file = self.roots_file.with_name(f"{proxy.namespace}_{proxy.name}.token")
        token_file.touch(mode=0o600)
        token_file.write_text(self.tokens.issue(proxy.namespace, proxy.name, account))
        return XdsTls(str(self.roots_file), XDS_NAME, str(token_file))

    async def _verify(self, token: str) -> TokenClaims:
        return self.tokens.verify(token)

    def rotate_root(self) -> None:
        """A new root signs from now on; every sidecar trusts old and new roots and
        gets a leaf of the new one (`retire_old_roots` once they all have)."""
        self.issuer.set_ca(self.issuer.ca.rotated(utcnow()))
        self.pipeline.refresh_certificates()

    def retire_old_roots(self) -> None:
        self.issuer.set_ca(self.issuer.ca.retire_old_roots(utcnow()))
        self.pipeline.refresh_certificates()

    async def wait_synced(self, after: int = -1) -> None:
        """Until the store has moved past generation `after` and every sidecar
        acknowledged the config built from it."""
        # ACKs land in the status registry, which has no events: poll it briefly.
        while self.store.generation == after or not self.in_sync():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def in_sync(self) -> bool:
        """Every sidecar acknowledged every type of its current snapshot, and the
        snapshots reflect the latest store (with its made-up gateway pods)."""
        if not self.gateways.current or self.pipeline.built_generation != self.store.generation:
            return False
        return not any(self._behind(proxy.id) for proxy in self.pipeline.mesh.proxies)

    def _write_state(self) -> None:
        # Called every supervision tick while in sync: rebuild only when an input moved
        # (the store, the built mesh, the lagging sidecars), or idle costs CPU.
        inputs = (self.store.generation, self.pipeline.built_generation, str(self.lagging))
        if inputs == self._state_inputs:
            return
        self._state_inputs = inputs
        workloads = Workloads.of(self.store)
        gateways = {p.id: p for p in self.pipeline.mesh.proxies if p.kind == "gateway"}
        lagging = self.lagging
        pods: dict[str, Any] = {}
        for (ns, name), pod in sorted(workloads.pods.items()):
            assert isinstance(pod, Pod)
            ip = pod.status.pod_ip if pod.status else None
            if not ip:
                continue
            entry: dict[str, Any] = {"ip": ip, "injected": (ns, name) in workloads.injected}
            gateway = gateways.get(proxy_id(ns, name))
            if gateway is not None:
                # A gateway pod: its Envoy listens on the pod's address at each server port.
                entry.update(
                    gateway={str(s.port): f"{ip}:{s.port}" for s in gateway.servers},
                    admin=f"{ip}:{ADMIN_PORT}",
                    synced=gateway.id not in lagging,
                )
                if gateway.id in lagging:
                    entry["problem"] = lagging[gateway.id]
            if entry["injected"]:
                entry.update(
                    outbound=f"{ip}:{OUTBOUND_PORT}",
                    inbound=f"{ip}:{INBOUND_PORT}",
                    admin=f"{ip}:{ADMIN_PORT}",
                    synced=True,
                )
                why = lagging.get(proxy_id(ns, name))
                if why:
                    entry.update(synced=False, problem=why)
            pods[f"{ns}/{name}"] = entry
        state = {
            "xds": self.xds,
            "xds_tls": {"roots": str(self.roots_file), "server_name": XDS_NAME},
            "monitoring": self.monitoring,
            "pods": pods,
        }
        if state == self.state:
            return
        self.state = state
        if self.state_path is not None:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2) + "\n")
            tmp.replace(self.state_path)
            log.info("state written to %s", self.state_path)

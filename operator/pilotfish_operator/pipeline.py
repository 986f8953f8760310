"""Store changes → (debounced) translation → per-proxy snapshots in the xDS cache.

Changes are merged: the mesh is rebuilt once the store has been quiet for
`debounce` seconds, or at the latest `max_delay` after the first change, so a
burst of edits costs one translation. Under continuous churn (a rollout's Pod and
EndpointSlice writes come every few ms for seconds) the store is never quiet, so
`max_delay` is also how stale a sidecar's endpoints may get: 1 s (bench/churn.py:
with 10 s, endpoints of pods already gone stayed up to 4.5 s and 9 % of requests
failed; with 1 s, 9 pushes for a 100-pod rollout and none failed).

Snapshots are built only for proxies that are connected; a proxy that connects
gets one at once from the current mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pilotfish_xds import ir
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.codec import EncodeCache
from pilotfish_xds.status import StatusRegistry
from pilotfish_xds.translate import WorkloadSecrets
from pilotfish_xds.translate import translate as to_envoy
from pilotfish_xds.translate.mtls import Credential

from .security import credentials
from .security.issuer import Issuer
from .store import Key, Store
from .translate import Options, Translator
from .translate.failures import Failures
from .translate.findings import Findings, by_object

log = logging.getLogger(__name__)


@dataclass
class PushStats:
    """What the last rebuild cost; read by benchmarks and logs."""

    translate_s: float = 0.0
    encode_s: float = 0.0
    proxies: int = 0
    rebuilds: int = 0
    failed: int = 0
    """Translations or proxy configs that raised (bugs), kept out of service."""


FULL_COLLECTION_EVERY = 20
"""Rebuilds between full cyclic collections (see `_collector_paused`)."""


@contextlib.contextmanager
def _collector_paused(full_collection: bool) -> Iterator[None]:
    """A rebuild makes hundreds of thousands of objects that mostly live until the
    next one. The cyclic collector would scan them again and again while they are
    made and afterwards (0.7 s per 10,000-service rebuild), so it is paused for the
    rebuild and what survives is frozen out of later scans. Frozen cyclic garbage
    is not collected, so every FULL_COLLECTION_EVERY rebuilds a full collection
    runs first; reference counting frees everything else as usual."""
    gc.unfreeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        if full_collection:
            gc.collect()
        gc.freeze()


class Pipeline:
    def __init__(
        self,
        store: Store,
        cache: SnapshotCache,
        options: Options | None = None,
        debounce: float = 0.1,
        max_delay: float = 1.0,
        ready: asyncio.Event | None = None,
        issuer: Issuer | None = None,
        status: StatusRegistry | None = None,
    ) -> None:
        self.store = store
        self.status = status
        """Told what each push should converge to (pilot_proxy_convergence_time)."""
        self._changed_at: float | None = None
        self.issuer = issuer
        """Signs each proxy's workload certificate; None: no mesh mTLS."""
        self.cache = cache
        self.options = options or Options()
        self.translator = Translator(self.options)
        self.debounce = debounce
        self.max_delay = max_delay
        self.ready = ready
        """When given, nothing is built until it is set: a source that has not seen
        everything yet (the operator before its first full listing) would otherwise
        hand proxies a partial config. Until then proxies keep what they have."""
        self.encoder = EncodeCache()
        self.mesh = ir.Mesh()
        self.warnings: list[str] = []
        self.failures: Failures = {}
        """Objects the last translation could not translate (see translate.failures)."""
        self.on_failures: list[Callable[[Failures], None]] = []
        """Called when `failures` changes (the status writer reports them)."""
        self.statuses: dict[Key, dict[str, Any]] = {}
        self.on_statuses: list[Callable[[dict[Key, dict[str, Any]]], None]] = []
        """Called when the Gateway API objects' status changes (the status writer)."""
        self.findings: Findings = {}
        """The last translation's warnings by the object they name."""
        self.on_findings: list[Callable[[Findings], None]] = []
        """Called when `findings` changes (the status writer shows them)."""
        self.stats = PushStats()
        self.built_generation = -1
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self.rebuilt = asyncio.Event()
        """Set after every rebuild (tests and local mode wait on it)."""
        cache.on_connect(self._connected)

    def _connected(self, node_id: str, _node: dict[str, object]) -> None:
        self._pending.add(node_id)
        self._wake.set()

    def rebuild(self) -> None:
        """Translate the store now and refresh every connected proxy's snapshot."""
        with _collector_paused(self.stats.rebuilds % FULL_COLLECTION_EVERY == 0):
            self._rebuild()

    def _rebuild(self) -> None:
        t0 = time.perf_counter()
        generation = self.store.generation
        try:
            result = self.translator.translate(self.store)
        except Exception:
            # Failures are isolated per object inside the translator; one that escapes
            # it must still not stop the control plane: proxies keep what they have.
            log.exception("translation failed; every proxy keeps its last config")
            self.translator = Translator(self.options)  # start clean next time
            self.built_generation = generation
            self.stats.failed += 1
            return
        self.mesh, self.warnings = result.mesh, result.warnings
        if result.failures != self.failures:
            self.failures = result.failures
            for callback in self.on_failures:
                callback(self.failures)
        if result.statuses != self.statuses:
            self.statuses = result.statuses
            for told in self.on_statuses:
                told(self.statuses)
        findings = by_object(result.warnings)
        if findings != self.findings:
            self.findings = findings
            for notify in self.on_findings:
                notify(findings)
        t1 = time.perf_counter()
        self._push(set(self.cache.connected()), self._changed_at)
        self._changed_at = None
        if self.issuer is not None:
            self.issuer.forget({p.identity for p in self.mesh.proxies})
        self.encoder.sweep()
        self.built_generation = generation
        self.stats.translate_s = t1 - t0
        self.stats.encode_s = time.perf_counter() - t1
        self.stats.rebuilds += 1
        log.info(
            "mesh rebuilt: %d services ports, %d clusters, %d proxies "
            "(translate %.1f ms, envoy+encode %.1f ms)",
            len(self.mesh.virtual_hosts),
            len(self.mesh.clusters),
            self.stats.proxies,
            self.stats.translate_s * 1e3,
            self.stats.encode_s * 1e3,
        )
        self.rebuilt.set()

    def _push(self, nodes: set[str], since: float | None = None) -> None:
        """`since`: when the change this push carries was first seen (default: now)."""
        since = since if since is not None else time.monotonic()
        by_id = {p.id: p for p in self.mesh.proxies}
        self.stats.proxies = 0
        for node in sorted(nodes):
            proxy = by_id.get(node)
            if proxy is None:
                # Unknown to the mesh (yet): it keeps what it has, or waits for its first config.
                continue
            if proxy.on_demand and not self._delta(node):
                # VHDS needs Delta xDS: a sidecar on State of the World (say, injected
                # before scoping was switched on) is sent everything instead.
                proxy = dataclasses.replace(proxy, on_demand=False)
            try:
                snapshot = to_envoy(self.mesh, proxy, self.encoder, self._secrets(proxy))
            except Exception:
                log.exception("building the config of %s failed; it keeps its last one", node)
                self.stats.failed += 1
                continue
            if self.status is not None:
                old = self.cache.get(node)
                types = snapshot.type_urls()
                if old is None or any(old.version(t) != snapshot.version(t) for t in types):
                    self.status.expect(node, since)
            self.cache.set(node, snapshot)
            self.stats.proxies += 1

    def refresh_certificates(self) -> None:
        """Rebuild every connected proxy's config now (the CA changed): the rest is
        cached, the secrets are the difference."""
        self._push(set(self.cache.connected()))

    def _delta(self, node: str) -> bool:
        """Whether `node`'s streams are all Delta xDS (unknown without a status registry:
        assumed, as the bootstrap of a scoped sidecar asks for it)."""
        if self.status is None:
            return True
        found = self.status.get(node)
        kinds = {s.kind for s in found.streams.values()} if found is not None else set()
        return kinds == {"delta"}

    def _secrets(self, proxy: ir.Proxy) -> WorkloadSecrets | None:
        if self.issuer is None or not proxy.identity:
            return None
        cert = self.issuer.certificate(proxy.identity)
        return WorkloadSecrets(
            cert.chain_pem, cert.key_pem, cert.roots_pem, self._credentials(proxy)
        )

    def _credentials(self, proxy: ir.Proxy) -> tuple[Credential, ...]:
        """A gateway's server certificates, from its namespace's Secrets (read at each
        build: an edited Secret reaches the gateway by SDS, its listeners untouched)."""
        out: dict[str, Credential] = {}
        for server in proxy.servers:
            tls = server.tls
            if tls is None:
                continue
            name = tls.credential.removeprefix(credentials.SDS_PREFIX)
            found = credentials.read(self.store, proxy.namespace, name, tls.mode != "SIMPLE")
            if isinstance(found, Credential) and (found.ca_pem or found.name not in out):
                out[found.name] = found
        return tuple(out.values())

    def _until_renewal(self) -> float | None:
        """Seconds until the first certificate is due (None: none issued)."""
        due = self.issuer.next_renewal() if self.issuer is not None else None
        if due is None:
            return None
        return max(0.0, (due - self.issuer.now()).total_seconds()) if self.issuer else None

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watch_store())
        try:
            if self.ready is not None:
                await self.ready.wait()
            self.rebuild()
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._until_renewal())
                except TimeoutError:
                    # A certificate is due: every proxy's config is rebuilt (unchanged
                    # resources are cached; the renewed secrets are the difference).
                    self.refresh_certificates()
                    continue
                self._wake.clear()
                if self.store.generation != self.built_generation:
                    await self._settle()
                    self._pending.clear()
                    self.rebuild()
                elif self._pending:
                    nodes, self._pending = self._pending, set()
                    self._push(nodes)
        finally:
            watcher.cancel()

    async def _watch_store(self) -> None:
        while True:
            await self.store.wait_changed()
            if self._changed_at is None:
                self._changed_at = time.monotonic()
            self._wake.set()

    async def _settle(self) -> None:
        """Wait until the store has been quiet for `debounce`, or `max_delay` in all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay
        while True:
            seen = self.store.generation
            await asyncio.sleep(max(0.0, min(self.debounce, deadline - loop.time())))
            if self.store.generation == seen or loop.time() >= deadline:
                return

"""The mesh roots in every namespace: the ConfigMap `pilotfish-ca-root-cert` (key
`root-cert.pem`), as Istio's `istio-ca-root-cert`. Injected sidecars mount it to check
the control plane's certificate; applications may read it to trust mesh identities.

The leader writes it when a namespace appears, when the roots change, when it becomes
leader, and every ten minutes (restoring one someone deleted or edited). Each write
is a create, or a replace carrying the resourceVersion it read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..injection import ROOT_CONFIGMAP, ROOT_CONFIGMAP_KEY
from ..store import Key, Store
from .client import ApiError, KubeClient
from .kinds import Watched
from .leader_writer import LeaderWriter

log = logging.getLogger(__name__)

CONFIGMAP, KEY = ROOT_CONFIGMAP, ROOT_CONFIGMAP_KEY


class RootPublisher(LeaderWriter):
    def __init__(
        self, client: KubeClient, store: Store, is_leader: Callable[[], bool], roots: bytes
    ) -> None:
        self.client = client
        self.store = store
        super().__init__(is_leader)
        self.roots = roots
        self._written: dict[str, str] = {}
        """Namespace -> the roots last written there (or found there)."""

    def set_roots(self, roots: bytes) -> None:
        if roots != self.roots:
            self.roots = roots
            self._wake.set()

    def observe(self, watched: Watched, key: Key, obj: Mapping[str, Any] | None) -> None:
        """A ClusterView observer: a new namespace gets the ConfigMap now."""
        if watched.kind == "Namespace":
            if obj is None:
                self._written.pop(key[2], None)
            self._wake.set()

    async def write(self) -> bool:
        """Write every namespace that lacks the current roots; False if one failed."""
        text = self.roots.decode()
        ok = True
        for ns in sorted(n.metadata.name for n in self.store.of_kind("Namespace")):
            if self._written.get(ns) == text:
                continue
            try:
                await self._ensure(ns, text)
                self._written[ns] = text
            except ApiError as exc:
                # 403/404: a namespace being deleted refuses new objects.
                log.warning("root certificate ConfigMap in %s not written: HTTP %d", ns, exc.status)
                ok = exc.status in (403, 404) and ok
        return ok

    async def _ensure(self, namespace: str, text: str) -> None:
        base = f"/api/v1/namespaces/{namespace}/configmaps"
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CONFIGMAP,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "pilotfish"},
            },
            "data": {KEY: text},
        }
        try:
            current = await self.client.get(f"{base}/{CONFIGMAP}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            await self.client.post(base, body)
            log.info("root certificate ConfigMap created in %s", namespace)
            return
        if (current.get("data") or {}).get(KEY) == text:
            return
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self.client.put(f"{base}/{CONFIGMAP}", body)
        log.info("root certificate ConfigMap updated in %s", namespace)

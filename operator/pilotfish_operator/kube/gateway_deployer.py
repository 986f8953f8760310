"""Gateway pods for the Gateway API's Gateways, as Istio deploys them: the leader keeps a
ServiceAccount, a Deployment and a Service per Gateway of ours
(`translate/gateway_api/deployment.py`), owned by the Gateway, so Kubernetes' garbage
collector removes them with it.

It writes when a Gateway (or GatewayClass) changes, when it becomes leader, and every
ten minutes (restoring what someone deleted or edited). An object whose hash annotation
matches what we would write is left alone; otherwise it is created, or merge-patched
with the fields we own (a Deployment's replica count is set only at creation).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..store import Key, Store
from ..translate.gateway_api import deployment
from .client import ApiError, KubeClient
from .kinds import Watched
from .leader_writer import LeaderWriter

log = logging.getLogger(__name__)

PATHS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
}
_WAKE_ON = frozenset({"KubernetesGateway", "GatewayClass"})


class GatewayDeployer(LeaderWriter):
    def __init__(self, client: KubeClient, store: Store, is_leader: Callable[[], bool]) -> None:
        self.client = client
        self.store = store
        super().__init__(is_leader)
        self._written: dict[tuple[str, str, str], str] = {}
        """(kind, namespace, name) -> the hash last written there (or found there)."""

    def observe(self, watched: Watched, key: Key, obj: Mapping[str, Any] | None) -> None:
        """A ClusterView observer: a changed Gateway is deployed now."""
        if watched.kind in _WAKE_ON:
            self._wake.set()

    async def write(self) -> bool:
        """Write what differs; False if a write failed."""
        ok = True
        for gw in deployment.deployed(self.store):
            if not gw.metadata.uid:
                continue  # not from the API server: nothing can own what we write
            for obj in deployment.manifests(gw):
                meta = obj["metadata"]
                where = (obj["kind"], meta["namespace"], meta["name"])
                digest = meta["annotations"][deployment.HASH]
                if self._written.get(where) == digest:
                    continue
                try:
                    await self._ensure(obj)
                    self._written[where] = digest
                except ApiError as exc:
                    log.warning("%s %s/%s not written: %s", *where, exc)
                    ok = False
        return ok

    async def _ensure(self, obj: dict[str, Any]) -> None:
        kind, meta = obj["kind"], obj["metadata"]
        base = PATHS[kind].format(ns=meta["namespace"])
        try:
            current = await self.client.get(f"{base}/{meta['name']}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            if kind == "Deployment":
                obj = {**obj, "spec": {"replicas": 1, **obj["spec"]}}
            await self.client.post(base, obj)
            log.info("%s %s/%s created for its Gateway", kind, meta["namespace"], meta["name"])
            return
        found = (current.get("metadata") or {}).get("annotations") or {}
        if found.get(deployment.HASH) == meta["annotations"][deployment.HASH]:
            return
        patch = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind")}
        if kind == "Deployment":
            # The selector cannot change; it is the same for a Gateway's name anyway.
            patch["spec"] = {k: v for k, v in obj["spec"].items() if k != "selector"}
        await self.client.patch(f"{base}/{meta['name']}", patch)
        log.info("%s %s/%s updated for its Gateway", kind, meta["namespace"], meta["name"])

"""The mesh ConfigMap (api/mesh_config.py), read by name every few seconds.

One small GET instead of a watch on every ConfigMap of the cluster; an edit applies
within `EVERY` seconds on every replica. A mesh config that does not validate is
logged (kind, name, field path) and the last good one is kept, as for every object.
"""

from __future__ import annotations

import logging

from ..api import mesh_config
from ..store import Store
from .client import ApiError, KubeClient
from .polling import poll

log = logging.getLogger(__name__)

EVERY = 10.0


class MeshConfigReader:
    def __init__(self, client: KubeClient, store: Store, namespace: str) -> None:
        self.client = client
        self.store = store
        self.namespace = namespace
        self.key = ("ConfigMap", namespace, mesh_config.CONFIGMAP)

    async def read(self) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/configmaps/{mesh_config.CONFIGMAP}"
        try:
            obj = await self.client.get(path)
        except ApiError as exc:
            if exc.status == 404:
                self.store.delete(self.key)
                return
            log.warning("mesh config ConfigMap not read: HTTP %d", exc.status)
            return
        self.store.apply({**obj, "apiVersion": "v1", "kind": "ConfigMap"})

    async def run(self) -> None:
        await poll(lambda: EVERY, self.read, "mesh config ConfigMap")

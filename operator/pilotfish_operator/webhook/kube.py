"""The webhooks' Kubernetes calls, over the operator's own client: the thin, untested-against-
a-real-API-server layer behind CertStore, NamespaceLabels and SkipEvents."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from typing import Any

from ..kube.client import ApiError, KubeClient
from .certs import Conflict, StoredSecret, WebhookKind

_WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/{kind}webhookconfigurations/{name}"


async def server_version(client: KubeClient) -> dict[str, Any]:
    """The API server's /version (for inject.native_sidecars)."""
    return await client.get("/version")


class KubeCertStore:
    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def read_secret(self, namespace: str, name: str) -> StoredSecret | None:
        try:
            secret = await self.client.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        return StoredSecret(data, secret["metadata"]["resourceVersion"])

    async def write_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        resource_version: str | None,
        secret_type: str = "kubernetes.io/tls",
    ) -> None:
        metadata: dict[str, Any] = {"name": name, "namespace": namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version  # optimistic concurrency
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": secret_type,
            "metadata": metadata,
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        base = f"/api/v1/namespaces/{namespace}/secrets"
        try:
            if resource_version is None:
                await self.client.post(base, body)
            else:
                await self.client.put(f"{base}/{name}", body)
        except ApiError as exc:
            if exc.status in (409, 404):  # written (or deleted) by someone else meanwhile
                raise Conflict(f"Secret {namespace}/{name}") from None
            raise

    async def patch_ca_bundle(self, kind: WebhookKind, name: str, ca_bundle: bytes) -> bool:
        path = _WEBHOOKS.format(kind=kind, name=name)
        encoded = base64.b64encode(ca_bundle).decode()
        for _ in range(5):
            try:
                config = await self.client.get(path)
            except ApiError as exc:
                if exc.status == 404:
                    return False
                raise
            webhooks = config.get("webhooks") or []
            if all((w.get("clientConfig") or {}).get("caBundle") == encoded for w in webhooks):
                return True
            for webhook in webhooks:
                webhook["clientConfig"] = {
                    **(webhook.get("clientConfig") or {}),
                    "caBundle": encoded,
                }
            try:
                await self.client.put(path, config)  # carries resourceVersion: no lost update
                return True
            except ApiError as exc:
                if exc.status != 409:
                    raise
        raise Conflict(f"{kind} webhook configuration {name} kept changing")


class KubeNamespaces:
    """Reads the namespace on each admission; an informer cache can replace it."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def labels(self, namespace: str) -> Mapping[str, str] | None:
        try:
            ns = await self.client.get(f"/api/v1/namespaces/{namespace}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        labels: dict[str, str] = ns.get("metadata", {}).get("labels") or {}
        return labels


class KubeEvents:
    """A Normal Event saying why a pod got no sidecar. A generateName pod has no name yet,
    so the Event goes to its controller (e.g. the ReplicaSet) when it has one."""

    def __init__(self, client: KubeClient, component: str = "pilotfish-sidecar-injector") -> None:
        self.client = client
        self.component = component

    async def skipped(self, namespace: str, pod: Mapping[str, Any], reason: str) -> None:
        meta = pod.get("metadata") or {}
        target: dict[str, Any] | None = None
        if meta.get("name"):
            target = {"apiVersion": "v1", "kind": "Pod", "name": meta["name"]}
        else:
            owners = [o for o in meta.get("ownerReferences") or () if o.get("controller")]
            if owners:
                o = owners[0]
                target = {k: o[k] for k in ("apiVersion", "kind", "name", "uid") if k in o}
        if target is None:
            return
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        prefix = meta.get("name") or meta.get("generateName") or "pod-"
        await self.client.post(
            f"/api/v1/namespaces/{namespace}/events",
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{prefix.rstrip('-')}-", "namespace": namespace},
                "involvedObject": {**target, "namespace": namespace},
                "type": "Normal",
                "reason": "SidecarNotInjected",
                "message": f"no sidecar injected: {reason}",
                "source": {"component": self.component},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )

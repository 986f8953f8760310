"""Fakes for the webhooks' Kubernetes side and a client for the real HTTPS server."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pilotfish_operator.webhook.certs import Conflict, SecretCerts, StoredSecret, WebhookKind
from pilotfish_operator.webhook.inject import XDS_HOST, XDS_TLS_PORT, Config, Injector
from pilotfish_operator.webhook.server import WebhookServer
from pilotfish_operator.webhook.sidecar_bootstrap import PodXdsSecurity

SERVICE_HOST = "pilotfish.pilotfish-system.svc"


@dataclass
class FakeCertStore:
    """Secrets and webhook configurations in memory, with resourceVersion semantics."""

    secrets: dict[tuple[str, str], StoredSecret] = field(default_factory=dict)
    ca_bundles: dict[tuple[str, str], bytes] = field(default_factory=dict)
    """Present = the configuration exists (installed by the chart)."""
    writes: int = 0
    types: dict[tuple[str, str], str] = field(default_factory=dict)
    _version: int = 0

    def install_webhooks(self) -> None:
        self.ca_bundles[("mutating", "pilotfish-sidecar-injector")] = b""
        self.ca_bundles[("validating", "pilotfish-validator")] = b""

    def put(self, namespace: str, name: str, data: Mapping[str, bytes]) -> None:
        self._version += 1
        self.secrets[(namespace, name)] = StoredSecret(dict(data), str(self._version))

    async def read_secret(self, namespace: str, name: str) -> StoredSecret | None:
        await asyncio.sleep(0)  # a round trip: racing replicas interleave here
        return self.secrets.get((namespace, name))

    async def write_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        resource_version: str | None,
        secret_type: str = "kubernetes.io/tls",
    ) -> None:
        await asyncio.sleep(0)
        current = self.secrets.get((namespace, name))
        if (current.resource_version if current else None) != resource_version:
            raise Conflict(f"{namespace}/{name}")
        self.writes += 1
        self.types[(namespace, name)] = secret_type
        self.put(namespace, name, data)

    async def patch_ca_bundle(self, kind: WebhookKind, name: str, ca_bundle: bytes) -> bool:
        if (kind, name) not in self.ca_bundles:
            return False
        self.ca_bundles[(kind, name)] = ca_bundle
        return True


@dataclass
class FakeNamespaces:
    labels_by_namespace: dict[str, dict[str, str]] = field(default_factory=dict)

    async def labels(self, namespace: str) -> Mapping[str, str] | None:
        return self.labels_by_namespace.get(namespace)


@dataclass
class FakeEvents:
    recorded: list[tuple[str, str, str]] = field(default_factory=list)

    async def skipped(self, namespace: str, pod: Mapping[str, Any], reason: str) -> None:
        meta = pod.get("metadata") or {}
        self.recorded.append((namespace, meta.get("name") or meta.get("generateName", ""), reason))


def client_context(ca_bundle: bytes) -> ssl.SSLContext:
    """Trusts only the webhook CA and checks the Service's name, as the API server does."""
    return ssl.create_default_context(cadata=ca_bundle.decode())


def admission_review(request: Mapping[str, Any], uid: str = "0b7a3c6e") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": uid, **request},
    }


async def post(
    port: int, path: str, body: Any, ca_bundle: bytes
) -> tuple[int, dict[str, Any] | str]:
    """POST to the webhook over HTTPS on 127.0.0.1, verifying it as the Service's name."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{port}{path}",
            data=json.dumps(body) if not isinstance(body, bytes) else body,
            headers={"Content-Type": "application/json"},
            ssl=client_context(ca_bundle),
            server_hostname=SERVICE_HOST,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response,
    ):
        text = await response.text()
        if response.content_type == "application/json":
            parsed: dict[str, Any] = json.loads(text)
            return response.status, parsed
        return response.status, text


@dataclass
class Webhook:
    server: WebhookServer
    port: int
    store: FakeCertStore
    namespaces: FakeNamespaces
    events: FakeEvents

    @property
    def ca_bundle(self) -> bytes:
        assert self.server.serving is not None
        return self.server.serving.ca_bundle


def injection_config(
    native_sidecars: bool = True, xds_security: bool = True, delta: bool = True
) -> Config:
    """As the operator configures its injector (security on unless turned off; Delta
    xDS unless run with --no-on-demand)."""
    if not xds_security:
        return Config(native_sidecars=native_sidecars, delta=delta)
    return Config(
        xds_port=XDS_TLS_PORT,
        native_sidecars=native_sidecars,
        security=PodXdsSecurity(server_name=XDS_HOST),
        delta=delta,
    )


async def start_webhook(
    native_sidecars: bool = True, xds_security: bool = True, delta: bool = True
) -> Webhook:
    store, namespaces, events = FakeCertStore(), FakeNamespaces(), FakeEvents()
    store.install_webhooks()
    server = WebhookServer(
        Injector(injection_config(native_sidecars, xds_security, delta)),
        SecretCerts(store),
        namespaces,
        events,
    )
    port = await server.start("127.0.0.1", 0)
    return Webhook(server, port, store, namespaces, events)

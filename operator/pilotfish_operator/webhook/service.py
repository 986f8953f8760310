"""The admission webhooks as one of the operator's servers: everything they need,
built from the operator's flags and its API client."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..kube.client import KubeClient
from ..store import Store
from .certs import FileCerts, SecretCerts, dns_names
from .inject import (
    DEFAULT_TEMPLATE,
    XDS_PORT,
    XDS_TLS_PORT,
    Config,
    Injector,
    Template,
    merge_values,
    native_sidecars,
)
from .kube import KubeCertStore, KubeEvents, KubeNamespaces, server_version
from .server import WebhookServer, split_address
from .sidecar_bootstrap import PodXdsSecurity

log = logging.getLogger(__name__)

VALUES_FILE = "injection-values.yaml"
"""Read from beside the template: the chart mounts its proxy image and resources there."""


class StoreNamespaces:
    """Namespace labels from the operator's own watch, asking the API only for a
    namespace it has not seen (yet)."""

    def __init__(self, store: Store, fallback: KubeNamespaces) -> None:
        self.store = store
        self.fallback = fallback

    async def labels(self, namespace: str) -> Mapping[str, str] | None:
        known = self.store.get(("Namespace", "", namespace))
        if known is not None:
            return dict(known.metadata.labels)
        return await self.fallback.labels(namespace)


def injection_values(template: Path) -> dict[str, Any]:
    path = template.with_name(VALUES_FILE)
    overrides = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    values: dict[str, Any] = merge_values(overrides)
    return values


@contextlib.asynccontextmanager
async def webhooks(
    client: KubeClient,
    store: Store,
    *,
    address: str,
    namespace: str,
    cert_secret: str,
    cert_dir: Path | None,
    injection_template: Path | None,
    cluster_domain: str,
    xds_security: bool = True,
    trust_domain: str = "cluster.local",
    delta: bool = True,
    on_configuration_change: list[Callable[[], Awaitable[object]]] | None = None,
) -> AsyncIterator[WebhookServer]:
    """The webhook server, serving until the context exits. Appending to
    `on_configuration_change` (the operator calls it on every change of the two webhook
    configurations) makes it patch the CA back into one that lost it."""
    template_path = injection_template or DEFAULT_TEMPLATE
    version = await server_version(client)
    xds_host = f"pilotfish.{namespace}.svc"
    config = Config(
        xds_host=xds_host,
        xds_port=XDS_TLS_PORT if xds_security else XDS_PORT,
        security=PodXdsSecurity(server_name=xds_host) if xds_security else None,
        trust_domain=trust_domain,
        native_sidecars=native_sidecars(version),
        values=injection_values(template_path),
        delta=delta,
    )
    certs: FileCerts | SecretCerts = (
        FileCerts(cert_dir)
        if cert_dir is not None
        else SecretCerts(
            KubeCertStore(client),
            namespace=namespace,
            secret=cert_secret,
            names=dns_names(namespace=namespace, domain=cluster_domain),
        )
    )
    server = WebhookServer(
        Injector(config, Template.load(template_path)),
        certs,
        StoreNamespaces(store, KubeNamespaces(client)),
        KubeEvents(client),
    )
    await server.start(*split_address(address))
    log.info(
        "sidecar injection: native sidecars %s (Kubernetes %s.%s)",
        "on" if config.native_sidecars else "off",
        version.get("major"),
        version.get("minor"),
    )
    hooks = on_configuration_change if on_configuration_change is not None else []
    hooks.append(server.refresh)
    try:
        yield server
    finally:
        hooks.remove(server.refresh)
        await server.stop()

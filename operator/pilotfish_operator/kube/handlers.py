"""Thin kopf handlers: every watch event of a watched kind goes to the ClusterView.

Handlers are registered on a registry the caller owns (not kopf's global one), so
each operator instance (and each test) has its own handlers bound to its own view.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf
import kubernetes

from ..webhook.certs import WEBHOOKS
from .credentials import connection_info
from .kinds import Watched
from .view import ClusterView

WebhookChanged = Callable[[], Awaitable[object]]


def register(
    registry: kopf.OperatorRegistry,
    view: ClusterView,
    cfg: kubernetes.client.Configuration,
    webhook_changed: list[WebhookChanged] | None = None,
) -> None:
    """Every watched kind into `view`; each change of our webhook configurations calls
    the callbacks in `webhook_changed` (filled later, by the webhook server)."""

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # Our own login replaces kopf's defaults, so `--kubeconfig` is honoured.
        return connection_info(cfg)

    for watched in view.watched:
        _watch(registry, view, watched)
    if webhook_changed is not None:
        _watch_webhook_configurations(registry, webhook_changed)


def _watch_webhook_configurations(
    registry: kopf.OperatorRegistry, callbacks: list[WebhookChanged]
) -> None:
    # A configuration created or replaced after start (a `helm upgrade`) has no caBundle
    # until it is patched again: watch the two and patch on every change.
    async def on_event(**_: Any) -> None:
        for callback in list(callbacks):
            await callback()

    for kind, name in WEBHOOKS:
        kopf.on.event(
            "admissionregistration.k8s.io",
            "v1",
            f"{kind}webhookconfigurations",
            id=f"webhook-{kind}",
            when=_named(name),
            registry=registry,
        )(on_event)


def _named(wanted: str) -> Callable[..., bool]:
    def when(name: str, **_: Any) -> bool:
        return name == wanted

    return when


def _watch(registry: kopf.OperatorRegistry, view: ClusterView, watched: Watched) -> None:
    # async: kopf runs sync handlers in threads, and the Store belongs to the loop.
    async def on_event(event: Mapping[str, Any], **_: Any) -> None:
        view.event(watched, event.get("type"), event["object"])

    kopf.on.event(
        group=watched.group,
        version=watched.version,
        plural=watched.plural,
        id=f"view-{watched.plural}",
        registry=registry,
    )(on_event)

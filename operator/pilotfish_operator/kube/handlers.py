"""Thin kopf handlers: every watch event of a watched kind goes to the ClusterView.

Handlers are registered on a registry the caller owns (not kopf's global one), so
each operator instance (and each test) has its own handlers bound to its own view.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
import kubernetes

from .credentials import connection_info
from .kinds import Watched
from .view import ClusterView


def register(
    registry: kopf.OperatorRegistry, view: ClusterView, cfg: kubernetes.client.Configuration
) -> None:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # Our own login replaces kopf's defaults, so `--kubeconfig` is honoured.
        return connection_info(cfg)

    for watched in view.watched:
        _watch(registry, view, watched)


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

"""The operator's view of the cluster: watch events and complete listings into the Store.

Events are applied as they come. A listing (at start, and again whenever kopf's
watch stream has to start over) is applied only once it is complete, and then
whole: objects of that kind the listing no longer has were deleted while we were
not watching, and go. Until every kind has been listed once there is no full
view; the pipeline builds nothing before that, so a restarted operator never
hands a sidecar a partial config.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..store import Key, Store
from .kinds import WATCHED, Watched, key_of, to_store

log = logging.getLogger(__name__)

Observer = Callable[[Watched, Key, Mapping[str, Any] | None], None]
"""Told about every object of a watched kind after the Store took it (None: deleted)."""


class ClusterView:
    def __init__(self, store: Store, watched: Iterable[Watched] = WATCHED) -> None:
        self.store = store
        self.watched = tuple(watched)
        self.listed: set[str] = set()
        """Kinds listed completely at least once."""
        self.full = asyncio.Event()
        """Set once every watched kind has been listed completely."""
        self.observers: list[Observer] = []

    def event(self, watched: Watched, type_: str | None, obj: Mapping[str, Any]) -> None:
        """One watch event (type None: an object of a listing, seen before it completes)."""
        if type_ == "DELETED":
            key = key_of(watched, obj)
            self.store.delete(key)
            self._tell(watched, key, None)
        else:
            self._apply(watched, obj)

    def relisted(self, watched: Watched, objects: Iterable[Mapping[str, Any]]) -> None:
        """A complete listing of one kind: it replaces what the Store has of that kind."""
        seen = {self._apply(watched, obj) for obj in objects}
        known = {r.key for r in self.store.of_kind(watched.kind)}
        known |= {k for k in self.store.errors() if k[0] == watched.kind}
        for key in sorted(known - seen):
            log.info("%s %s/%s is gone (not in a new listing)", *key)
            self.store.delete(key)
            self._tell(watched, key, None)
        if watched.kind not in self.listed:
            self.listed.add(watched.kind)
            log.info("%s listed (%d objects)", watched.kind, len(seen))
        if not self.full.is_set() and self.listed >= {w.kind for w in self.watched}:
            log.info("full view of the cluster: building config")
            self.full.set()

    def _apply(self, watched: Watched, obj: Mapping[str, Any]) -> Key:
        key = self.store.apply(to_store(watched, obj))
        self._tell(watched, key, obj)
        return key

    def _tell(self, watched: Watched, key: Key, obj: Mapping[str, Any] | None) -> None:
        for observer in self.observers:
            observer(watched, key, obj)

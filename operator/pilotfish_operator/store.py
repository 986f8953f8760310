"""The validated objects the mesh is built from, whichever source they came from.

Sources (a directory of YAML, or the Kubernetes API) hand raw objects to `apply`.
An object that fails validation is reported and left out; if an earlier version of
it was valid, that version stays, so a bad edit never takes config away from Envoy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from .api import ConfigError, Resource, model_for, parse

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
"""(kind, namespace, name); namespace is "" for cluster-scoped kinds."""


def raw_key(obj: Mapping[str, Any]) -> Key:
    """Best-effort key of an object that may not validate, for error bookkeeping."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        meta = {}
    kind = str(obj.get("kind", "?"))
    model = model_for(obj.get("apiVersion"), kind)
    if model is not None:
        kind = model.store_kind()
    namespaced = kind not in ("Namespace", "Node")
    namespace = str(meta.get("namespace") or ("default" if namespaced else ""))
    return kind, namespace, str(meta.get("name", "?"))


class Store:
    def __init__(self) -> None:
        self._objects: dict[Key, Resource] = {}
        self._by_kind: dict[str, dict[Key, Resource]] = {}
        self._kind_generation: dict[str, int] = {}
        self._errors: dict[Key, ConfigError] = {}
        self._generation = 0
        self._changed = asyncio.Event()

    @property
    def generation(self) -> int:
        """Bumped on every change that can alter the mesh."""
        return self._generation

    def apply(self, obj: Mapping[str, Any]) -> Key:
        """Validate and store one object; on error keep the last good version."""
        try:
            resource = parse(obj)
        except ConfigError as err:
            key = raw_key(obj)
            if self._errors.get(key) != err:
                log.error("rejected: %s", err)
            self._errors[key] = err
            return key
        key = resource.key
        self._errors.pop(key, None)
        if self._objects.get(key) != resource:
            self._objects[key] = resource
            self._by_kind.setdefault(key[0], {})[key] = resource
            self._bump(key[0])
        return key

    def delete(self, key: Key) -> None:
        self._errors.pop(key, None)
        if self._objects.pop(key, None) is not None:
            del self._by_kind[key[0]][key]
            self._bump(key[0])

    def get(self, key: Key) -> Resource | None:
        return self._objects.get(key)

    def of_kind(self, kind: str) -> Iterator[Resource]:
        return iter(list(self._by_kind.get(kind, {}).values()))

    def keys(self) -> frozenset[Key]:
        return frozenset(self._objects)

    def errors(self) -> dict[Key, ConfigError]:
        return dict(self._errors)

    async def wait_changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    def changed_since(self, generation: int) -> set[str]:
        """The kinds with a change after `generation`."""
        return {k for k, g in self._kind_generation.items() if g > generation}

    def _bump(self, kind: str) -> None:
        self._generation += 1
        self._kind_generation[kind] = self._generation
        self._changed.set()

"""An immutable, versioned set of encoded resources for one proxy."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .codec import Encoded
from .on_demand import OnDemand
from .types import CLUSTER, VIRTUAL_HOST

_EMPTY: Mapping[str, Encoded] = MappingProxyType({})


def content_version(resources: Iterable[Encoded]) -> str:
    """A version that is a function of content only: stable across restarts and
    replicas, so a reconnecting Envoy that already has it is not sent it again."""
    digest = hashlib.sha256()
    for name, body_hash in sorted((r.name, r.hash) for r in resources):
        digest.update(f"{name}\0{body_hash}\n".encode())
    return digest.hexdigest()[:16]


class Snapshot:
    """Resources per type URL, each type with its own content version.

    `references` are the names other resources point at (per type: the EDS
    service names clusters use, the RDS names listeners use); the translator
    knows them already, so the snapshot does not decode anything to check them.
    """

    __slots__ = ("_references", "_resources", "_versions", "on_demand")

    def __init__(
        self,
        resources: Mapping[str, Iterable[Encoded]],
        references: Mapping[str, frozenset[str]] | None = None,
        on_demand: OnDemand | None = None,
    ) -> None:
        """`on_demand`: what the proxy may fetch besides `resources` (a scoped proxy)."""
        self.on_demand = on_demand
        by_type: dict[str, Mapping[str, Encoded]] = {}
        for type_url, items in resources.items():
            named: dict[str, Encoded] = {}
            for item in items:
                if item.name in named:
                    raise ValueError(f"duplicate {type_url} resource {item.name!r}")
                named[item.name] = item
            by_type[type_url] = MappingProxyType(named)
        if on_demand is not None:
            by_type.setdefault(VIRTUAL_HOST, _EMPTY)
        self._resources = by_type
        self._versions = {t: content_version(r.values()) for t, r in by_type.items()}
        if on_demand is not None:
            # A scoped proxy's version of a type covers what it may fetch too: an ACK
            # of it means the proxy holds the current config of whatever it fetched.
            fetched = list(on_demand.clusters.values()) + list(by_type.get(CLUSTER, {}).values())
            self._versions[CLUSTER] = content_version(fetched)
            offers = {o.resource for o in on_demand.virtual_hosts.values()}
            self._versions[VIRTUAL_HOST] = content_version(offers)
        self._references = dict(references or {})

    def type_urls(self) -> frozenset[str]:
        return frozenset(self._resources)

    def resources(self, type_url: str) -> Mapping[str, Encoded]:
        return self._resources.get(type_url, _EMPTY)

    def version(self, type_url: str) -> str:
        return self._versions.get(type_url) or content_version(())

    def missing(self) -> dict[str, frozenset[str]]:
        """Referenced names with no resource, per type (empty when consistent)."""
        gaps = {t: names - self.resources(t).keys() for t, names in self._references.items()}
        return {t: names for t, names in gaps.items() if names}

    def consistent(self) -> bool:
        return not self.missing()

    def __repr__(self) -> str:
        counts = ", ".join(f"{t.rsplit('.', 1)[-1]}={len(r)}" for t, r in self._resources.items())
        return f"Snapshot({counts})"

"""An immutable, versioned set of encoded resources for one proxy, made of parts that
other proxies' snapshots may share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
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


def _combined(versions: Iterable[str]) -> str:
    """The version of a type spread over several parts: still a function of content
    only (each part's version is), so replicas agree on it."""
    return hashlib.sha256("\n".join(sorted(versions)).encode()).hexdigest()[:16]


class Part:
    """Resources per type URL with each type's content version, computed once.

    A proxy's snapshot is its own part plus, for a sidecar, the outbound part every
    proxy with the same view shares (`translate.outbound`): a push to a thousand
    proxies builds, hashes and stores the services they see once.

    `references` are the names other resources point at (per type: the EDS service
    names clusters use, the RDS names listeners use); the translator knows them
    already, so nothing is decoded to check them. `on_demand`: what a scoped proxy
    may fetch besides `resources`.
    """

    __slots__ = ("on_demand", "references", "resources", "versions")

    def __init__(
        self,
        resources: Mapping[str, Iterable[Encoded]],
        references: Mapping[str, frozenset[str]] | None = None,
        on_demand: OnDemand | None = None,
    ) -> None:
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
        self.resources: Mapping[str, Mapping[str, Encoded]] = by_type
        self.versions = {t: content_version(r.values()) for t, r in by_type.items()}
        if on_demand is not None:
            # A scoped proxy's version of a type covers what it may fetch too: an ACK
            # of it means the proxy holds the current config of whatever it fetched.
            fetched = list(on_demand.clusters.values()) + list(by_type.get(CLUSTER, {}).values())
            self.versions[CLUSTER] = content_version(fetched)
            offers = {o.resource for o in on_demand.virtual_hosts.values()}
            self.versions[VIRTUAL_HOST] = content_version(offers)
        self.references: Mapping[str, frozenset[str]] = dict(references or {})


class _Merged(Mapping[str, Encoded]):
    """Disjoint mappings read as one, without copying the large shared one."""

    __slots__ = ("_maps",)

    def __init__(self, maps: tuple[Mapping[str, Encoded], ...]) -> None:
        self._maps = maps

    def __getitem__(self, name: str) -> Encoded:
        for m in self._maps:
            found = m.get(name)
            if found is not None:
                return found
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(name in m for m in self._maps)

    def __iter__(self) -> Iterator[str]:
        for m in self._maps:
            yield from m

    def __len__(self) -> int:
        return sum(len(m) for m in self._maps)


class Snapshot:
    """Resources per type URL, each type with its own content version: the proxy's
    own `resources` plus the `shared` part (see `Part`)."""

    __slots__ = ("_references", "_resources", "_versions", "on_demand")

    def __init__(
        self,
        resources: Mapping[str, Iterable[Encoded]],
        references: Mapping[str, frozenset[str]] | None = None,
        on_demand: OnDemand | None = None,
        shared: Part | None = None,
    ) -> None:
        own = Part(resources, references, on_demand)
        parts = (own,) if shared is None else (shared, own)
        scoped = [p.on_demand for p in parts if p.on_demand is not None]
        if len(scoped) > 1:
            raise ValueError("two on-demand catalogues in one snapshot")
        self.on_demand = scoped[0] if scoped else None
        self._resources: dict[str, Mapping[str, Encoded]] = {}
        self._versions: dict[str, str] = {}
        for type_url in {t for p in parts for t in p.resources}:
            holding = [p for p in parts if type_url in p.resources]
            # A part without resources of the type adds nothing to it, not even to its
            # version: a proxy with no own clusters has the shared part's version.
            holding = [p for p in holding if p.resources[type_url]] or holding[:1]
            if len(holding) == 1:
                self._resources[type_url] = holding[0].resources[type_url]
                self._versions[type_url] = holding[0].versions[type_url]
                continue
            maps = tuple(p.resources[type_url] for p in holding)
            big, *small = sorted(maps, key=len, reverse=True)
            for m in small:
                clash = next((n for n in m if n in big), None)
                if clash is not None:
                    raise ValueError(f"duplicate {type_url} resource {clash!r}")
            self._resources[type_url] = _Merged(maps)
            self._versions[type_url] = _combined(p.versions[type_url] for p in holding)
        self._references = tuple(p.references for p in parts)

    def type_urls(self) -> frozenset[str]:
        return frozenset(self._resources)

    def resources(self, type_url: str) -> Mapping[str, Encoded]:
        return self._resources.get(type_url, _EMPTY)

    def version(self, type_url: str) -> str:
        return self._versions.get(type_url) or content_version(())

    def missing(self) -> dict[str, frozenset[str]]:
        """Referenced names with no resource, per type (empty when consistent)."""
        gaps: dict[str, frozenset[str]] = {}
        for references in self._references:
            for t, names in references.items():
                lacking = frozenset(n for n in names if n not in self.resources(t))
                if lacking:
                    gaps[t] = gaps.get(t, frozenset()) | lacking
        return gaps

    def consistent(self) -> bool:
        return not self.missing()

    def __repr__(self) -> str:
        counts = ", ".join(f"{t.rsplit('.', 1)[-1]}={len(r)}" for t, r in self._resources.items())
        return f"Snapshot({counts})"

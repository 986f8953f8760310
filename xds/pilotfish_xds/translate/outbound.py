"""What a sidecar sees of the mesh's services, built once per distinct view.

A sidecar's outbound config (its route tables or on-demand catalogue, the clusters
and endpoints it may call) depends on a few of its fields only: namespace, labels,
Sidecar scope, outbound policy, locality, telemetry and on-demand scoping. The pods
of a Deployment agree on all of them, so a push to a thousand sidecars builds a
handful of outbound parts, not a thousand; each proxy adds its own listeners,
inbound side and certificates (`snapshot.Part`).

Of the labels only the keys some rule selects workloads by count, and the locality
only when some destination balances by it (`selection`, once per mesh): without
sourceLabels or workloadSelectors, every pod of a namespace shares one view.

A layout's outbound builder is handed `viewer(proxy)`, the proxy with every other
field blanked: a builder that read a per-pod field (its address, its inbound
services) would get an empty value and fail the golden tests, rather than give one
pod's config to another.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from .. import ir
from ..codec import EncodeCache

_T = TypeVar("_T")


class SameMesh:
    """The mesh as a cache key, by identity: hashing ten thousand services for every
    proxy's lookup would cost what sharing saves, and every rebuild makes a new mesh."""

    __slots__ = ("mesh",)

    def __init__(self, mesh: ir.Mesh) -> None:
        self.mesh = mesh

    def __hash__(self) -> int:
        return id(self.mesh)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SameMesh) and other.mesh is self.mesh


@dataclass(frozen=True, slots=True)
class Selection:
    """What of a workload the mesh's outbound rules look at: the label keys its
    sourceLabels, DestinationRule workloadSelectors and failoverPriority name, and
    whether any locality load balancing needs the workload's locality."""

    label_keys: frozenset[str] = frozenset()
    locality: bool = False


def selection(mesh: ir.Mesh) -> Selection:
    keys: set[str] = set()
    for vh in mesh.virtual_hosts:
        tables: list[ir.VirtualHost | ir.RouteTable] = [vh, *vh.tables]
        for table in tables:
            matches = [r.match for r in table.routes] + [r.match for r in table.l4_routes]
            for match in matches:
                if match.source is not None:
                    keys.update(k for k, _ in match.source.labels)
    locality = False
    for c in mesh.clusters:
        if c.scope is not None:
            keys.update(k for k, _ in c.scope.selector)
        if c.policy.locality is not None:
            locality = True
            keys.update(c.policy.locality.failover_priority)
    return Selection(frozenset(keys), locality)


def viewer(proxy: ir.Proxy, seen: Selection) -> ir.Proxy:
    """`proxy` reduced to what decides its outbound view (see the module docstring):
    of its labels only those some rule selects by, its locality only when some
    destination balances by locality."""
    return ir.Proxy(
        id="",
        name="",
        namespace=proxy.namespace,
        ip="",
        labels=tuple((k, v) for k, v in proxy.labels if k in seen.label_keys),
        capture=proxy.capture,
        kind=proxy.kind,
        locality=proxy.locality if seen.locality else None,
        telemetry=proxy.telemetry,
        # Only a CUSTOM policy's provider reaches the outbound side (its cluster).
        authz=tuple(p for p in proxy.authz if p.provider is not None),
        outbound_policy=proxy.outbound_policy,
        egress_imports=proxy.egress_imports,
        on_demand=proxy.on_demand,
    )


class Carry:
    """A view's per-item results from its previous build, by the item's identity.

    Every edit makes a new mesh, but the translator keeps each unchanged service and
    cluster the very same object: the view's next build takes their results back
    after an identity check and a comparison of the other inputs, instead of hashing
    ten thousand keys into the encode cache. `get` during a build, `turn` after it.
    """

    __slots__ = ("_last", "_next")

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], tuple[object, Hashable, Any]] = {}
        self._next: dict[tuple[str, int], tuple[object, Hashable, Any]] = {}

    def get(
        self, kind: str, item: object, inputs: Hashable, make: Callable[..., _T], *args: Any
    ) -> _T:
        """`make(*args)`, unless the last build made it for this very `item` (and equal
        `inputs`: whatever else it depends on; the view itself is the same)."""
        key = (kind, id(item))
        hit = self._last.get(key)
        if hit is not None and hit[0] is item and hit[1] == inputs:
            value: _T = hit[2]
        else:
            value = make(*args)
        self._next[key] = (item, inputs, value)
        return value

    def begin(self) -> None:
        """A build starts (one that failed half-way left its results behind)."""
        self._next = {}

    def turn(self) -> None:
        """The build is complete: what it used is what the next one may reuse."""
        self._last, self._next = self._next, {}


Builder = Callable[[EncodeCache, SameMesh, ir.Proxy, bool, Carry], _T]


def _selection(_cache: EncodeCache, mesh: SameMesh) -> Selection:
    return selection(mesh.mesh)


def _carry(_cache: EncodeCache, *_view: Hashable) -> Carry:
    return Carry()


def shared(
    build: Builder[_T], mesh: ir.Mesh, proxy: ir.Proxy, cache: EncodeCache, mesh_tls: bool
) -> _T:
    """`build(cache, mesh, viewer(proxy), mesh_tls, carry)`, once per distinct view and
    mesh; `carry` is the view's, kept across meshes while the view exists."""
    same = SameMesh(mesh)
    seen = cache.shared(_selection, same)
    view = viewer(proxy, seen)
    carry = cache.shared(_carry, build, view, mesh_tls)
    return cast(_T, cache.shared(_build, build, same, view, mesh_tls, carry))


def _build(
    cache: EncodeCache,
    build: Builder[_T],
    mesh: SameMesh,
    view: ir.Proxy,
    mesh_tls: bool,
    carry: Carry,
) -> _T:
    carry.begin()
    built = build(cache, mesh, view, mesh_tls, carry)
    carry.turn()
    return built

"""VirtualServices by the hosts they route, and the hosts they send to."""

from __future__ import annotations

from collections.abc import Iterable

from ..api import VirtualService
from ..store import Store
from . import delegation
from .hosts import Names
from .precedence import age
from .unreachable import unreachable


def export_to(values: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    return tuple(values) if values else ("*",)


def by_host(
    store: Store, names: Names, warnings: list[str], after: Iterable[VirtualService] = ()
) -> dict[str, list[VirtualService]]:
    """VirtualServices per host, oldest first (creation time, then namespace/name): a
    proxy uses the first one exported to its namespace. `after` (the Gateway API's GAMMA
    routes as VirtualServices) come after every VirtualService: Istio's API wins a host."""

    out: dict[str, list[VirtualService]] = {}
    all_vs = [v for v in store.of_kind("VirtualService") if isinstance(v, VirtualService)]
    by_name = {(v.namespace, v.name): v for v in all_vs}
    global _checked
    checked: dict[int, tuple[VirtualService, list[str]]] = {}
    for stored in [*sorted(all_vs, key=age), *after]:
        # Checked once per stored object (models are replaced on change, never mutated):
        # an edit of one of ten thousand VirtualServices re-checks one.
        seen = _checked.get(id(stored))
        found = seen[1] if seen is not None and seen[0] is stored else unreachable(stored)
        checked[id(stored)] = (stored, found)
        warnings += found
        vs = delegation.expand(stored, lambda ns, name: by_name.get((ns, name)), warnings)
        if vs.spec.gateways and "mesh" not in vs.spec.gateways:
            continue  # bound to gateways only
        for host in vs.spec.hosts:
            earlier = out.setdefault(names.fqdn(host, vs.namespace), [])
            shadow = next((e for e in earlier if export_to(e.spec.export_to) == ("*",)), None)
            if shadow is not None:
                warnings.append(
                    f"VirtualService {vs.namespace}/{vs.name}: host {host} is already routed "
                    f"for every namespace by VirtualService {shadow.namespace}/{shadow.name}; "
                    "ignored for that host"
                )
                continue
            earlier.append(vs)
    _checked = checked
    return out


_checked: dict[int, tuple[VirtualService, list[str]]] = {}
"""id → (the VirtualService, its unreachable-route warnings) from the last `by_host`."""


def destinations(vs: VirtualService, names: Names) -> set[str]:
    """Hosts a VirtualService sends to (routes and mirrors): their services and rules
    shape its routes, so a change to one of them re-translates it."""
    out: set[str] = set()
    for http in vs.spec.http:
        dests = [rd.destination for rd in http.route] + [m.destination for m in http.mirrors]
        if http.mirror is not None:
            dests.append(http.mirror)
        out.update(names.fqdn(d.host, vs.namespace) for d in dests)
    l4 = [rd for r in vs.spec.tcp for rd in r.route] + [rd for r in vs.spec.tls for rd in r.route]
    out.update(names.fqdn(rd.destination.host, vs.namespace) for rd in l4)
    return out

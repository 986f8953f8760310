"""What a proxy may fetch on demand (VHDS, and clusters by name), and what a Delta
stream sends for it.

A scoped proxy's snapshot holds what it is always sent (its wildcard CDS set, its
listeners, route tables without their HTTP virtual hosts) plus an `OnDemand`
catalogue. Envoy's on_demand filter pauses a request whose Host no virtual host
matches and subscribes to `<route table>/<Host>` (VHDS); the stream resolves that
alias to the service's virtual host, sends the clusters its routes name first (a
virtual host goes out only once the proxy has acknowledged, so warmed, its clusters:
`protocol.SEND_AFTER`), then the virtual host with the alias, and Envoy resumes the
request. An alias no service answers gets the layout's fallback (or an empty
resource: Envoy then routes as before, i.e. no route). Every later push re-resolves
the subscribed aliases, so an edit reaches the proxies that fetched the host and a
removed service is removed from them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from .codec import Encoded

Fallback = Callable[[str], Encoded]
"""A virtual host for a Host the mesh does not know (its only domain is that Host)."""


@dataclass(frozen=True, slots=True)
class Offer:
    """A virtual host as VHDS serves it: named `<route table>/<name>` (Envoy removes
    VHDS virtual hosts by their own name), with the clusters its routes name."""

    resource: Encoded
    clusters: tuple[str, ...] = ()
    service: tuple[str, int] | None = None
    """The (hostname, port) it serves, if a mesh service: its subsets come along."""


@dataclass(frozen=True)
class OnDemand:
    clusters: Mapping[str, Encoded] = field(default_factory=dict)
    """Clusters sent only when named: by an Offer the proxy fetched, or by the proxy."""
    virtual_hosts: Mapping[str, Offer] = field(default_factory=dict)
    """`<route table>/<domain>` → the virtual host serving that domain there."""
    fallbacks: Mapping[str, Fallback] = field(default_factory=dict)
    """Route table → what an unknown Host gets (absent: an empty resource)."""
    tables: tuple[str, ...] = ()
    """The route tables whose virtual hosts come from VHDS."""

    def resolve(self, alias: str) -> Offer | None:
        """The virtual host Envoy's alias `<route table>/<Host>` stands for: an exact
        domain, else the longest `*.suffix` wildcard, else the table's fallback."""
        found = self.virtual_hosts.get(alias)
        if found is not None:
            return found
        route, sep, host = alias.partition("/")
        if not sep or not host:
            return None  # the route table's own name (the initial subscription)
        host = host.lower()
        found = self.virtual_hosts.get(f"{route}/{host}")
        if found is not None:
            return found
        dot = host.find(".")
        while dot != -1:
            found = self.virtual_hosts.get(f"{route}/*{host[dot:]}")
            if found is not None:
                return found
            dot = host.find(".", dot + 1)
        fallback = self.fallbacks.get(route)
        return Offer(fallback(host)) if fallback is not None else None


def is_alias(name: str) -> bool:
    """`<route table>/<Host>`; a bare route table name subscribes to its namespace."""
    return "/" in name


def virtual_hosts(
    catalogue: OnDemand | None, aliases: Collection[str]
) -> tuple[dict[str, Encoded], dict[str, str | None]]:
    """The virtual hosts the subscribed `aliases` resolve to (by resource name), and
    each alias's resource name (None: unresolved)."""
    wanted: dict[str, Encoded] = {}
    names: dict[str, str | None] = {}
    for alias in sorted(aliases):
        if not is_alias(alias):
            continue
        offer = catalogue.resolve(alias) if catalogue is not None else None
        names[alias] = offer.resource.name if offer is not None else None
        if offer is not None:
            wanted[offer.resource.name] = offer.resource
    return wanted, names


@dataclass(frozen=True)
class Answer:
    """What a VHDS response says besides the virtual hosts that changed."""

    aliases: dict[str, list[str]] = field(default_factory=dict)
    """Resource name → the newly subscribed aliases it answers (sent again if unchanged:
    Envoy resumes a paused request when its alias comes back)."""
    unresolved: list[str] = field(default_factory=list)
    """Newly subscribed aliases nothing serves: empty resources, so Envoy resumes too."""
    tables: list[str] = field(default_factory=list)
    """`<table>/` per route table, as removed, in the stream's first answer: Envoy
    subscribes to VHDS without names, hands a response to a route table by its
    resources' namespace, and each table waits for one before it warms; removing
    nothing under that namespace is such a response."""


NO_ANSWER = Answer()


def answer(catalogue: OnDemand | None, fresh: Collection[str], first: bool) -> Answer:
    """The aliases subscribed since the last response, resolved; `first`: the stream's
    first VHDS response."""
    _, resolved = virtual_hosts(catalogue, fresh)
    out = Answer()
    for alias, name in resolved.items():
        if name is None:
            out.unresolved.append(alias)
        else:
            out.aliases.setdefault(name, []).append(alias)
    if first and catalogue is not None:
        out.tables.extend(f"{t}/" for t in catalogue.tables)
    return out


def clusters(
    base: Mapping[str, Encoded],
    catalogue: OnDemand | None,
    named: Collection[str],
    aliases: Collection[str],
) -> dict[str, Encoded]:
    """`base` (what the CDS subscription gets without names) plus the clusters the
    proxy named and those the virtual hosts it fetched route to."""
    if catalogue is None:
        return dict(base)
    out = dict(base)
    for name in named:
        found = catalogue.clusters.get(name)
        if found is not None:
            out[name] = found
    for alias in aliases:
        offer = catalogue.resolve(alias) if is_alias(alias) else None
        for name in offer.clusters if offer is not None else ():
            found = catalogue.clusters.get(name)
            if found is not None:
                out[name] = found
    return out

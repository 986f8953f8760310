"""What one proxy sees of the mesh: exportTo, source-scoped routes, host names."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from .. import ir
from .sidecar_scope import imported, kept_clusters

Domains = tuple[str, ...]


def _default_ports(items: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Per host name, the port a bare `Host: name` means: 80 when served, else the lowest."""
    ports: dict[str, set[int]] = {}
    for host, port in items:
        ports.setdefault(host, set()).add(port)
    return {h: 80 if 80 in p else min(p) for h, p in ports.items()}


def _domains(names: Iterable[str], port: int, bare: bool) -> Domains:
    names = list(dict.fromkeys(names))
    out = [f"{n}:{port}" for n in names]
    if bare:
        out += names
    return tuple(out)


def _sees(vh: ir.VirtualHost, proxy: ir.Proxy) -> bool:
    """exportTo lets the proxy's namespace see the host, and its Sidecar imports it."""
    return ir.visible(vh.export_to, vh.namespace, proxy.namespace) and imported(
        proxy, vh.hostname, vh.namespace, vh.port
    )


def outbound_virtual_hosts(
    mesh: ir.Mesh, proxy: ir.Proxy
) -> list[tuple[ir.VirtualHost, Domains, tuple[ir.Route, ...]]]:
    """Each visible virtual host with the domains and routes it has for this proxy."""
    seen = [
        vh
        for vh in mesh.virtual_hosts
        # HTTP ports have no L4 routes: the cheapest test in this per-proxy loop.
        if not vh.l4_routes and _sees(vh, proxy)
    ]
    defaults = _default_ports((vh.hostname, vh.port) for vh in seen)
    return [
        (vh, *_view(vh, proxy.namespace, proxy.labels, defaults[vh.hostname] == vh.port))
        for vh in seen
    ]


@functools.lru_cache(maxsize=1 << 16)
def _view(
    vh: ir.VirtualHost, namespace: str, labels: ir.Labels, bare: bool
) -> tuple[Domains, tuple[ir.Route, ...]]:
    """One virtual host as a proxy sees it. Remembered: most proxies and most pushes
    see most virtual hosts exactly as before (IR values hash once, so this is cheap)."""
    return _domains(_names(vh, namespace), vh.port, bare), _routes(vh, namespace, labels)


def _names(vh: ir.VirtualHost, namespace: str) -> list[str]:
    names = [vh.hostname, *vh.aliases]
    if vh.short_name and vh.namespace == namespace:
        names.append(vh.short_name)
    return names


def _routes(vh: ir.VirtualHost, namespace: str, labels: ir.Labels) -> tuple[ir.Route, ...]:
    return tuple(
        r
        for r in vh.routes_for(namespace)
        if r.match.source is None or r.match.source.selects(namespace, labels)
    )


def outbound_by_port(
    mesh: ir.Mesh, proxy: ir.Proxy
) -> dict[int, list[tuple[ir.VirtualHost, Domains, tuple[ir.Route, ...]]]]:
    """iptables capture: the visible virtual hosts grouped by service port.

    The original destination port picks the route configuration, so within one a
    bare name is unambiguous: every name and address is a domain with and without
    the port.
    """
    out: dict[int, list[tuple[ir.VirtualHost, Domains, tuple[ir.Route, ...]]]] = {}
    for vh in mesh.virtual_hosts:
        if not vh.l4_routes and _sees(vh, proxy):
            domains, routes = _port_view(vh, proxy.namespace, proxy.labels)
            out.setdefault(vh.port, []).append((vh, domains, routes))
    return dict(sorted(out.items()))


@functools.lru_cache(maxsize=1 << 16)
def _port_view(
    vh: ir.VirtualHost, namespace: str, labels: ir.Labels
) -> tuple[Domains, tuple[ir.Route, ...]]:
    # A ServiceEntry's CIDR blocks match TCP by address; they are not Host names.
    names = [*_names(vh, namespace), *(a for a in vh.addresses if "/" not in a)]
    return _domains(names, vh.port, True), _routes(vh, namespace, labels)


def outbound_l4_by_port(
    mesh: ir.Mesh, proxy: ir.Proxy
) -> dict[int, list[tuple[ir.VirtualHost, Domains, tuple[ir.L4Route, ...]]]]:
    """The visible TCP and TLS service ports, grouped by port: each with its names
    (the SNI a client may send for it) and its routes for this proxy."""
    out: dict[int, list[tuple[ir.VirtualHost, Domains, tuple[ir.L4Route, ...]]]] = {}
    for vh in mesh.virtual_hosts:
        if vh.l4_routes and _sees(vh, proxy):
            names = tuple(dict.fromkeys(_names(vh, proxy.namespace)))
            routes = tuple(
                r
                for r in vh.l4_routes_for(proxy.namespace)
                if r.match.source is None or r.match.source.selects(proxy.namespace, proxy.labels)
            )
            out.setdefault(vh.port, []).append((vh, names, routes))
    return dict(sorted(out.items()))


def visible_clusters(mesh: ir.Mesh, proxy: ir.Proxy) -> list[ir.Cluster]:
    """The clusters the proxy may call; of a cluster's variants (DestinationRules
    scoped by namespace, exportTo or workloadSelector), the one that fits it best."""
    out: list[ir.Cluster] = []
    best: dict[str, tuple[int, int]] = {}
    """cluster name → (rank, index in out) of the variant chosen so far"""
    scoped = proxy.egress_imports is not None
    kept = (
        kept_clusters((vh for vh in mesh.virtual_hosts if _sees(vh, proxy)), proxy)
        if scoped
        else frozenset()
    )
    for c in mesh.clusters:
        if not ir.visible(c.export_to, c.namespace, proxy.namespace):
            continue
        if scoped and c.name not in kept and not imported(proxy, c.hostname, c.namespace, c.port):
            continue
        if c.scope is None:
            out.append(c)
            continue
        rank = c.scope.rank(c.namespace, proxy.namespace, proxy.labels)
        if rank is None:
            continue
        seen = best.get(c.name)
        if seen is None:
            best[c.name] = (rank, len(out))
            out.append(c)
        elif rank < seen[0]:
            best[c.name] = (rank, seen[1])
            out[seen[1]] = c
    return out


def inbound_virtual_hosts(proxy: ir.Proxy) -> list[tuple[str, Domains, int, ir.Inbound]]:
    """(name, domains, app port, the service port) per service port reaching this
    workload, de-duplicated."""
    defaults = _default_ports((i.hostname, i.service_port) for i in proxy.inbound)
    taken: set[str] = set()
    out = []
    for i in proxy.inbound:
        if ir.proxying_of(i.protocol) != "http":
            continue  # not routed by Host: TCP and TLS reach the app by port
        names = [i.hostname, *i.aliases, *([i.short_name] if i.short_name else [])]
        bare = defaults[i.hostname] == i.service_port
        domains = tuple(d for d in _domains(names, i.service_port, bare) if d not in taken)
        taken.update(domains)
        if domains:
            out.append((f"inbound|{i.hostname}:{i.service_port}", domains, i.target_port, i))
    return out

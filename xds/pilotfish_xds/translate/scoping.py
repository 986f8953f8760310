"""Scoping without a hand-written Sidecar: a proxy with `ir.Proxy.on_demand` is sent
only what it cannot fetch by Host, and fetches each HTTP service the first time its
workload calls it (Envoy's on_demand filter and VHDS; the stream side is
`pilotfish_xds.on_demand`).

What stays pushed: listeners (one per port, few), TCP and TLS services and the
clusters their routes use (a connection is not routed by Host, so it cannot be
fetched by it), the clusters telemetry and CUSTOM authorization name, the app's own
clusters. What is fetched: every HTTP service's virtual host, and the clusters its
routes name (sent before it, so the resumed request finds them warm). A Sidecar
resource narrows what the layouts' views show, hence what can be fetched.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration, Vhds, VirtualHost
from envoy_data_plane.envoy.extensions.filters.http.on_demand.v3 import OnDemand as OnDemandConfig
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)
from envoy_data_plane.google.protobuf import Any

from .. import ir, wire
from ..codec import EncodeCache, Encoded
from ..on_demand import Fallback, Offer, OnDemand
from . import routes, view
from .config_source import ads
from .sidecar_scope import kept_clusters

ON_DEMAND_FILTER = "envoy.filters.http.on_demand"


def on_demand_filter() -> HttpFilter:
    """First on a scoped proxy's outbound connection managers: a request whose Host no
    virtual host matches waits while Envoy fetches it (VHDS), then is routed."""
    return _FILTER


_FILTER = wire.shared(HttpFilter(name=ON_DEMAND_FILTER, typed_config=Any.pack(OnDemandConfig())))


@functools.lru_cache(maxsize=1 << 10)
def route_table_head(name: str) -> bytes:
    """A route table whose virtual hosts come from VHDS (besides any given inline)."""
    return wire.encode(RouteConfiguration(name=name, vhds=Vhds(config_source=ads())))


@functools.lru_cache(maxsize=1 << 16)
def route_clusters(rs: tuple[ir.Route, ...]) -> tuple[str, ...]:
    """Every cluster the routes send to, mirrors included. Remembered: every scoped
    proxy asks it of every virtual host it sees, on every push."""
    out: dict[str, None] = {}
    for r in rs:
        if isinstance(r.action, ir.Forward):
            for w in r.action.clusters:
                out[w.cluster] = None
            for m in r.action.traffic.mirrors:
                out[m.cluster] = None
    return tuple(out)


def fallback(route: str, template: VirtualHost) -> Fallback:
    """An unknown Host on route table `route` gets `template`'s routes (Istio's
    passthrough or block_all), as a virtual host of its own: a `*` domain would match
    every Host, and no request would ever fetch a service again."""

    def build(host: str) -> Encoded:
        name = f"{route}/{host}"
        vhost = VirtualHost(name=name, domains=[host], routes=template.routes)
        return Encoded(name, wire.encode(vhost))

    return build


@dataclass
class Catalogue:
    """Collects a scoped proxy's on-demand resources as a layout walks its views."""

    pinned: frozenset[str]
    """Clusters that stay pushed (see `catalogue`)."""
    clusters: dict[str, Encoded] = field(default_factory=dict)
    services: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    """(hostname, port) → its on-demand clusters (the service's and each subset's)."""
    virtual_hosts: dict[str, Offer] = field(default_factory=dict)
    fallbacks: dict[str, Fallback] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)

    def on_demand(self, cluster: ir.Cluster) -> bool:
        return ir.proxying_of(cluster.protocol) == "http" and cluster.name not in self.pinned

    def add_cluster(self, cluster: ir.Cluster, built: Encoded) -> None:
        self.clusters[cluster.name] = built
        self.services.setdefault((cluster.hostname, cluster.port), []).append(cluster.name)

    def add_virtual_host(
        self,
        cache: EncodeCache,
        route: str,
        vh: ir.VirtualHost,
        domains: tuple[str, ...],
        rs: tuple[ir.Route, ...],
        tag_inbound: bool,
    ) -> None:
        """`vh` as a VHDS resource of route table `route`, found by each of `domains`."""
        name = f"{route}/{vh.name}"
        body = cache.build(name, routes.virtual_host, name, domains, rs, tag_inbound, True)
        offer = Offer(body, route_clusters(rs), (vh.hostname, vh.port))
        for d in domains:
            self.virtual_hosts.setdefault(f"{route}/{d.lower()}", offer)

    def route_table(
        self,
        cache: EncodeCache,
        route: str,
        views: Iterable[tuple[ir.VirtualHost, view.Domains, tuple[ir.Route, ...]]],
        tag_inbound: bool,
        unknown: VirtualHost | None,
    ) -> Encoded:
        """Route table `route` with its virtual hosts left to VHDS: each of `views` is
        offered instead; an unknown Host gets `unknown`'s routes (None: no route)."""
        self.tables.append(route)
        for vh, domains, rs in views:
            self.add_virtual_host(cache, route, vh, domains, rs, tag_inbound)
        if unknown is not None:
            self.fallbacks[route] = fallback(route, unknown)
        return Encoded(route, route_table_head(route))

    def freeze(self) -> OnDemand:
        """A fetched virtual host brings every subset cluster of its own service along
        with those its routes name: shifting traffic between subsets (a canary's
        90/10 → 50/50 → 100) is then one virtual-host update to clusters already warm,
        not a new cluster, its endpoints and a wait for it to warm first."""
        offers: dict[int, Offer] = {}
        hosts: dict[str, Offer] = {}
        for alias, offer in self.virtual_hosts.items():
            done = offers.get(id(offer))
            if done is None:
                siblings = self.services.get(offer.service, []) if offer.service else []
                extra = tuple(c for c in siblings if c not in offer.clusters)
                done = offers[id(offer)] = replace(offer, clusters=offer.clusters + extra)
            hosts[alias] = done
        return OnDemand(self.clusters, hosts, self.fallbacks, tuple(self.tables))


def catalogue(mesh: ir.Mesh, proxy: ir.Proxy) -> Catalogue | None:
    """An empty catalogue for a scoped proxy (None: it is sent everything). What its
    TCP and TLS services route to, and its collectors and providers, stay pushed."""
    if not proxy.on_demand or proxy.kind != "sidecar":
        return None
    l4 = [vh for views in view.outbound_l4_by_port(mesh, proxy).values() for vh, _, _ in views]
    return Catalogue(kept_clusters(l4, proxy))

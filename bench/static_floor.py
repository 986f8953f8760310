"""The floor of a full push: the very config a proxy is served over xDS, as a static
bootstrap Envoy loads at start-up with no xDS at all.

Built from the snapshot's encoded resources, at the wire level, into a binary
`Bootstrap` (a `.pb` file: Envoy picks the format by extension, so no YAML/JSON
parsing distorts the floor):

- every Cluster as served, except that an EDS cluster becomes STATIC (no EDS source)
  and carries its ClusterLoadAssignment inline (`load_assignment`);
- every Listener as served, except that an HTTP connection manager's RDS reference
  becomes the RouteConfiguration it names, inline (`route_config`);
- the rest of the bootstrap (node, admin, stats settings) as the sidecar's own.
"""

from __future__ import annotations

from typing import Any

import betterproto2
from envoy_data_plane.envoy.config.bootstrap.v3 import Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.listener.v3 import Filter, Listener
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    Rds,
)

from pilotfish_xds import codec, types, wire
from pilotfish_xds.snapshot import Snapshot

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3." + (
    "HttpConnectionManager"
)
_CLUSTER_TYPE = wire.field_number(Cluster, "type")
_CLUSTER_EDS = wire.field_number(Cluster, "eds_cluster_config")
_CLUSTER_NAME = wire.field_number(Cluster, "name")
_CLUSTER_LOAD = wire.field_number(Cluster, "load_assignment")
_EDS_SERVICE = 2  # Cluster.EdsClusterConfig.service_name
_HCM_RDS = wire.field_number(HttpConnectionManager, "rds")
_HCM_ROUTES = wire.field_number(HttpConnectionManager, "route_config")
_RDS_NAME = wire.field_number(Rds, "route_config_name")
_STATIC = wire.field_number(Bootstrap, "static_resources")
_LISTENERS = wire.field_number(BootstrapStaticResources, "listeners")
_CLUSTERS = wire.field_number(BootstrapStaticResources, "clusters")


def _fields(body: bytes) -> list[betterproto2.ParsedField]:
    return list(betterproto2.parse_fields(body))


def _string(body: bytes, number: int) -> str:
    return next((f.value.decode() for f in _fields(body) if f.number == number), "")


def static_cluster(body: bytes, endpoints: dict[str, bytes]) -> bytes:
    """An EDS cluster as a STATIC one with its endpoints inline; others as they are."""
    fields = _fields(body)
    eds = any(f.number == _CLUSTER_TYPE and f.value == ClusterDiscoveryType.EDS for f in fields)
    if not eds:
        return body
    config = next((f.value for f in fields if f.number == _CLUSTER_EDS), b"")
    name = _string(config, _EDS_SERVICE) or _string(body, _CLUSTER_NAME)
    kept = b"".join(f.raw for f in fields if f.number not in (_CLUSTER_TYPE, _CLUSTER_EDS))
    static = wire.tag(_CLUSTER_TYPE, 0) + wire.varint(ClusterDiscoveryType.STATIC)
    return kept + static + wire.length_delimited(_CLUSTER_LOAD, endpoints[name])


def _inline_routes(hcm: bytes, routes: dict[str, bytes]) -> bytes:
    fields = _fields(hcm)
    rds = next((f.value for f in fields if f.number == _HCM_RDS), None)
    if rds is None:
        return hcm
    kept = b"".join(f.raw for f in fields if f.number != _HCM_RDS)
    return kept + wire.length_delimited(_HCM_ROUTES, routes[_string(rds, _RDS_NAME)])


def static_listener(body: bytes, routes: dict[str, bytes]) -> bytes:
    """The listener with every HTTP connection manager's RDS routes inline."""
    listener: Listener = codec.decode(types.LISTENER, body)
    chains = [*listener.filter_chains]
    if listener.default_filter_chain is not None:
        chains.append(listener.default_filter_chain)
    filters: list[Filter] = [f for chain in chains for f in chain.filters]
    for f in filters:
        if f.typed_config is not None and f.typed_config.type_url == HCM_TYPE:
            f.typed_config.value = _inline_routes(f.typed_config.value, routes)
    return wire.encode(listener)


def static_bootstrap(snapshot: Snapshot, base: dict[str, Any]) -> bytes:
    """A binary Bootstrap: `base` (a JSON-able bootstrap: its node, admin, stats
    settings; its dynamic and static resources are dropped) plus the snapshot's
    resources as static ones."""
    if snapshot.on_demand is not None or snapshot.resources(types.SECRET):
        # Scoped proxies fetch on demand, and static secrets would need every SDS
        # reference rewritten: neither is in this benchmark's config.
        raise ValueError("only a full (not scoped) config without secrets can be made static")
    routes = {n: r.body for n, r in snapshot.resources(types.ROUTE).items()}
    endpoints = {n: r.body for n, r in snapshot.resources(types.ENDPOINT).items()}
    static = b"".join(
        [
            *(
                wire.length_delimited(_LISTENERS, static_listener(r.body, routes))
                for r in snapshot.resources(types.LISTENER).values()
            ),
            *(
                wire.length_delimited(_CLUSTERS, static_cluster(r.body, endpoints))
                for r in snapshot.resources(types.CLUSTER).values()
            ),
        ]
    )
    rest = {k: v for k, v in base.items() if k not in ("dynamic_resources", "static_resources")}
    return wire.encode(Bootstrap.from_dict(rest)) + wire.length_delimited(_STATIC, static)

"""xDS type URLs and the envoy-data-plane message class behind each one."""

from __future__ import annotations

import importlib
from typing import Any

_PREFIX = "type.googleapis.com/"

CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
VIRTUAL_HOST = _PREFIX + "envoy.config.route.v3.VirtualHost"
"""VHDS: virtual hosts a proxy fetches on demand (Delta only; see on_demand.py)."""

# The order a push walks the types in: clusters before their endpoints, listeners
# before their routes, so Envoy warms each resource with its dependencies at hand.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, VIRTUAL_HOST, SECRET)

# Types Envoy may subscribe to without names (legacy SotW wildcard).
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})

# Short names used by the debug service and the CLI.
SHORT_NAMES = {
    "clusters": CLUSTER,
    "endpoints": ENDPOINT,
    "listeners": LISTENER,
    "routes": ROUTE,
    "secrets": SECRET,
}

# type URL -> (module, class). Resolved lazily: importing these modules costs about
# 0.4 s, which CLI paths that never decode should not pay.
_CLASSES = {
    CLUSTER: ("envoy_data_plane.envoy.config.cluster.v3", "Cluster"),
    ENDPOINT: ("envoy_data_plane.envoy.config.endpoint.v3", "ClusterLoadAssignment"),
    LISTENER: ("envoy_data_plane.envoy.config.listener.v3", "Listener"),
    ROUTE: ("envoy_data_plane.envoy.config.route.v3", "RouteConfiguration"),
    SECRET: ("envoy_data_plane.envoy.extensions.transport_sockets.tls.v3", "Secret"),
    VIRTUAL_HOST: ("envoy_data_plane.envoy.config.route.v3", "VirtualHost"),
}


def message_class(type_url: str) -> Any:
    """The envoy-data-plane message class for `type_url` (KeyError if unknown)."""
    module, name = _CLASSES[type_url]
    return getattr(importlib.import_module(module), name)

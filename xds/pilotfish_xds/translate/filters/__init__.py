"""The HTTP filters of every connection manager, one module each, registered here.

A filter module defines one `HttpFilter` and nothing else: its Envoy name, its place
in the chain, what it adds to the connection manager (or None to stay out) and its
per-route configuration (or None). `hcm.http_connection_manager` assembles the chain
for every listener, and `routes.envoy_route` asks each filter for its route config,
so a feature that is an HTTP filter is written once, here, for every layout.
Order follows Istio's sidecar chain: authorization and authentication first, then
fault injection, CORS, telemetry, and the router last.
"""

from __future__ import annotations

from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter as EnvoyHttpFilter,
)
from envoy_data_plane.google.protobuf import Any

from ... import ir

# The one place filters are registered: import the module, add it here.
from . import cors, fault, router
from .base import HttpFilter

FILTERS: tuple[HttpFilter, ...] = tuple(
    sorted((fault.FILTER, cors.FILTER, router.FILTER), key=lambda f: f.order)
)


def chain() -> list[EnvoyHttpFilter]:
    """The connection manager's http_filters, in order."""
    out = []
    for f in FILTERS:
        config = f.config()
        if config is not None:
            out.append(EnvoyHttpFilter(name=f.name, typed_config=Any.pack(config)))
    return out


def per_route(route: ir.Route) -> dict[str, Any]:
    """typed_per_filter_config of one route."""
    out = {}
    for f in FILTERS:
        config = f.per_route(route)
        if config is not None:
            out[f.name] = config
    return out

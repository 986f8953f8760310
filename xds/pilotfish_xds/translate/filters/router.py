"""The router: forwards to the route's clusters. Always last."""

from __future__ import annotations

from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router

from .base import HttpFilter

FILTER = HttpFilter(name="envoy.filters.http.router", order=1000, config=Router)

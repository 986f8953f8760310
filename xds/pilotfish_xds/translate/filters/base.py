"""What a filter module declares (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import betterproto2
from envoy_data_plane.google.protobuf import Any

from ... import ir


@dataclass(frozen=True)
class HttpFilter:
    name: str
    """Envoy's filter name; also the key of its per-route config."""
    order: int
    """Lower runs first (see the module docstring for the bands)."""
    config: Callable[[], betterproto2.Message | None]
    """The filter's config in the chain; None leaves the filter out."""
    per_route: Callable[[ir.Route], Any | None] = lambda _: None
    """The route's config for this filter (typed_per_filter_config), packed, or None.
    Build it once per distinct value (`wire.built_once`): many routes share it."""

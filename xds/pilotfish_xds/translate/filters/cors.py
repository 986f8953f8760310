"""CORS (Istio's `corsPolicy`): the CORS filter in every chain, configured per route."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import RuntimeFractionalPercent
from envoy_data_plane.envoy.extensions.filters.http.cors.v3 import Cors, CorsPolicy
from envoy_data_plane.envoy.type.v3 import FractionalPercent
from envoy_data_plane.google.protobuf import Any

from ... import ir, wire
from ..matchers import string_matcher
from .base import HttpFilter

_ALWAYS = RuntimeFractionalPercent(default_value=FractionalPercent(numerator=100))


def _per_route(route: ir.Route) -> Any | None:
    action = route.action
    if not isinstance(action, ir.Forward) or action.traffic.cors is None:
        return None
    return _policy(action.traffic.cors)


@wire.built_once(1 << 10)
def _policy(c: ir.Cors) -> Any:
    return Any.pack(
        CorsPolicy(
            allow_origin_string_match=[string_matcher(m) for m in c.origins],
            allow_methods=",".join(c.methods),
            allow_headers=",".join(c.allow_headers),
            expose_headers=",".join(c.expose_headers),
            max_age=str(int(c.max_age.total_seconds())) if c.max_age is not None else "",
            allow_credentials=c.credentials,
            filter_enabled=_ALWAYS,
            forward_not_matching_preflights=c.forward_unmatched_preflights,
        )
    )


FILTER = HttpFilter(name="envoy.filters.http.cors", order=200, config=Cors, per_route=_per_route)

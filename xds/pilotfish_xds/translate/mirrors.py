"""Mirroring: `ir.Mirror` → Envoy's request mirror policy. Envoy sends the copy with
`-shadow` appended to the host and drops its answer; as Istio, the copy is not
counted as sampled for tracing."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import RuntimeFractionalPercent
from envoy_data_plane.envoy.config.route.v3 import RouteActionRequestMirrorPolicy
from envoy_data_plane.envoy.type.v3 import FractionalPercent, FractionalPercentDenominatorType

from .. import ir, wire


@wire.built_once(1 << 10)
def mirror_policy(m: ir.Mirror) -> RouteActionRequestMirrorPolicy:
    return RouteActionRequestMirrorPolicy(
        cluster=m.cluster,
        runtime_fraction=RuntimeFractionalPercent(
            default_value=FractionalPercent(
                numerator=m.per_million, denominator=FractionalPercentDenominatorType.MILLION
            )
        ),
        trace_sampled=False,
    )

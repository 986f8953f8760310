"""Warmup (Istio's `loadBalancer.warmup` / `warmupDurationSecs`): Envoy's slow start, so
a new endpoint's share of traffic ramps up instead of taking its full share at once."""

from __future__ import annotations

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.config.core.v3 import RuntimeDouble
from envoy_data_plane.envoy.type.v3 import Percent

from .. import ir, wire

AGGRESSION_KEY = "upstream.lb.slow_start.aggression"


def apply(out: cluster.Cluster, policy: str, w: ir.Warmup) -> None:
    if policy == "ROUND_ROBIN":
        out.round_robin_lb_config = cluster.ClusterRoundRobinLbConfig(slow_start_config=_slow(w))
    elif policy == "LEAST_REQUEST":
        out.least_request_lb_config = cluster.ClusterLeastRequestLbConfig(
            slow_start_config=_slow(w)
        )


@wire.built_once(256)
def _slow(w: ir.Warmup) -> cluster.ClusterSlowStartConfig:
    return cluster.ClusterSlowStartConfig(
        slow_start_window=w.duration,
        aggression=(
            RuntimeDouble(default_value=w.aggression, runtime_key=AGGRESSION_KEY)
            if w.aggression is not None
            else None
        ),
        min_weight_percent=Percent(value=w.min_percent) if w.min_percent is not None else None,
    )

"""Outlier detection (Istio's `outlierDetection`): eject hosts that keep failing, as
Istio configures Envoy (success-rate ejection off; enforcing 100 % for each consecutive
error kind that is set; `minHealthPercent` as the panic threshold)."""

from __future__ import annotations

from envoy_data_plane.envoy.config.cluster import v3 as cluster
from envoy_data_plane.envoy.type.v3 import Percent

from .. import ir, wire


def apply(out: cluster.Cluster, outlier: ir.Outlier | None) -> None:
    if outlier is None:
        return
    out.outlier_detection = _detection(outlier)
    out.common_lb_config = _panic_threshold(outlier.min_health_percent)


@wire.built_once(1 << 10)
def _detection(o: ir.Outlier) -> cluster.OutlierDetection:
    def enforcing(count: int | None) -> int | None:
        return None if count is None else (100 if count > 0 else 0)

    out = cluster.OutlierDetection(
        enforcing_success_rate=0,
        consecutive_5xx=o.consecutive_5xx,
        enforcing_consecutive_5xx=enforcing(o.consecutive_5xx),
        consecutive_gateway_failure=o.consecutive_gateway,
        enforcing_consecutive_gateway_failure=enforcing(o.consecutive_gateway),
        interval=o.interval,
        base_ejection_time=o.base_ejection_time,
        max_ejection_percent=o.max_ejection_percent,
    )
    if o.split_local_origin:
        out.split_external_local_origin_errors = True
        out.enforcing_local_origin_success_rate = 0
        if o.consecutive_local_origin:
            out.consecutive_local_origin_failure = o.consecutive_local_origin
            out.enforcing_consecutive_local_origin_failure = 100
    return out


@wire.built_once(128)
def _panic_threshold(percent: int) -> cluster.ClusterCommonLbConfig:
    return cluster.ClusterCommonLbConfig(healthy_panic_threshold=Percent(value=float(percent)))

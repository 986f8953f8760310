"""Fault injection (Istio's `fault`): the fault filter sits in every chain doing nothing,
and a route with a fault configures it for that route only."""

from __future__ import annotations

from envoy_data_plane.envoy.extensions.filters.common.fault.v3 import FaultDelay
from envoy_data_plane.envoy.extensions.filters.http.fault.v3 import FaultAbort, HttpFault
from envoy_data_plane.envoy.type.v3 import FractionalPercent, FractionalPercentDenominatorType
from envoy_data_plane.google.protobuf import Any

from ... import ir, wire
from .base import HttpFilter

_MILLION = FractionalPercentDenominatorType.MILLION


def _per_route(route: ir.Route) -> Any | None:
    action = route.action
    if not isinstance(action, ir.Forward) or action.traffic.fault is None:
        return None
    return _fault(action.traffic.fault)


@wire.built_once(1 << 10)
def _fault(f: ir.Fault) -> Any:
    out = HttpFault()
    if f.delay is not None:
        out.delay = FaultDelay(
            fixed_delay=f.delay.duration,
            percentage=FractionalPercent(numerator=f.delay.per_million, denominator=_MILLION),
        )
    if f.abort is not None:
        out.abort = FaultAbort(
            http_status=f.abort.http_status,
            grpc_status=f.abort.grpc_status,
            percentage=FractionalPercent(numerator=f.abort.per_million, denominator=_MILLION),
        )
    return Any.pack(out)


FILTER = HttpFilter(
    name="envoy.filters.http.fault", order=100, config=HttpFault, per_route=_per_route
)

"""Istio's fault injection: `HTTPFaultInjection` → `ir.Fault` (or None).

As Istio: a percentage not given means no request is affected (the deprecated integer
`percent` of a delay still counts); exponential delays and HTTP/2 errors are not
supported by Envoy's filter and are left out.
"""

from __future__ import annotations

from pilotfish_xds import ir

from ..api import GRPC_STATUS, HTTPFaultInjection, Percent


def _per_million(percentage: Percent | None, percent: int | None = None) -> int:
    if percentage is not None:
        return round(percentage.value * 10_000)
    return (percent or 0) * 10_000


def fault(spec: HTTPFaultInjection | None) -> ir.Fault | None:
    if spec is None:
        return None
    delay = abort = None
    d = spec.delay
    if d is not None and d.fixed_delay is not None:
        delay = ir.FaultDelay(d.fixed_delay, _per_million(d.percentage, d.percent))
    if spec.abort is not None:
        a = spec.abort
        share = _per_million(a.percentage)
        if a.http_status is not None:
            abort = ir.FaultAbort(share, http_status=a.http_status)
        elif a.grpc_status is not None:
            abort = ir.FaultAbort(share, grpc_status=GRPC_STATUS.index(a.grpc_status))
    if delay is None and abort is None:
        return None
    return ir.Fault(delay, abort)

"""DestinationRules: which applies to a host, and the effective policy per port and subset."""

from __future__ import annotations

from datetime import UTC, datetime

from pilotfish_xds import ir

from ..api import DestinationRule, LoadBalancerSettings, TrafficPolicy
from ..store import Store
from .hosts import Names

_EPOCH = datetime.min.replace(tzinfo=UTC)


def _age(obj: DestinationRule) -> tuple[datetime, str, str]:
    ts = obj.metadata.creation_timestamp or _EPOCH
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC), obj.namespace, obj.name)


def rules_by_host(store: Store, names: Names) -> dict[str, DestinationRule]:
    """One rule per host: the oldest wins (creation time, then namespace/name), as Istio."""
    out: dict[str, DestinationRule] = {}
    for dr in sorted((d for d in store.of_kind("DestinationRule")), key=lambda d: _age(d)):  # type: ignore[arg-type]
        assert isinstance(dr, DestinationRule)
        out.setdefault(names.fqdn(dr.spec.host, dr.namespace), dr)
    return out


def _port_level(policy: TrafficPolicy | None, port: int) -> LoadBalancerSettings | None:
    if policy is None:
        return None
    for pl in policy.port_level_settings:
        if pl.port is not None and pl.port.number == port and pl.load_balancer is not None:
            return pl.load_balancer
    return policy.load_balancer


def load_balancer_settings(
    dr: DestinationRule | None, port: int, subset: str
) -> LoadBalancerSettings | None:
    """Subset policy overrides the rule's; port-level settings override either's default."""
    if dr is None:
        return None
    chosen = _port_level(dr.spec.traffic_policy, port)
    for s in dr.spec.subsets:
        if s.name == subset and s.traffic_policy is not None:
            chosen = _port_level(s.traffic_policy, port) or chosen
    return chosen


_SIMPLE: dict[str, ir.LbPolicy] = {
    "UNSPECIFIED": "ROUND_ROBIN",
    "ROUND_ROBIN": "ROUND_ROBIN",
    "LEAST_CONN": "LEAST_REQUEST",  # Istio's deprecated name for it
    "LEAST_REQUEST": "LEAST_REQUEST",
    "RANDOM": "RANDOM",
    "PASSTHROUGH": "PASSTHROUGH",
}


def load_balancer(settings: LoadBalancerSettings | None) -> ir.LoadBalancer:
    if settings is None:
        return ir.LoadBalancer()
    ch = settings.consistent_hash
    if ch is not None:
        if ch.maglev is not None:
            return ir.LoadBalancer("MAGLEV", table_size=ch.maglev.table_size or None)
        ring = ch.ring_hash.minimum_ring_size if ch.ring_hash else ch.minimum_ring_size
        return ir.LoadBalancer("RING_HASH", ring_size=ring or None)
    return ir.LoadBalancer(_SIMPLE[settings.simple or "ROUND_ROBIN"])


def hash_policy(settings: LoadBalancerSettings | None) -> tuple[ir.HashPolicy, ...]:
    ch = settings.consistent_hash if settings else None
    if ch is None:
        return ()
    if ch.http_header_name:
        return (ir.HashPolicy("header", ch.http_header_name),)
    if ch.http_cookie is not None:
        c = ch.http_cookie
        return (ir.HashPolicy("cookie", c.name, cookie_ttl=c.ttl, cookie_path=c.path),)
    if ch.http_query_parameter_name:
        return (ir.HashPolicy("query", ch.http_query_parameter_name),)
    if ch.use_source_ip:
        return (ir.HashPolicy("source_ip"),)
    return ()

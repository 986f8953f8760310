"""DestinationRules: which applies to a host, and the effective traffic policy per port and
subset (Istio's merge), turned into the IR's cluster policy and route hash policy."""

from __future__ import annotations

from pilotfish_xds import ir

from ..api import (
    ClientTLSSettings,
    DestinationRule,
    LoadBalancerSettings,
    OutlierDetection,
    TrafficPolicy,
)
from ..store import Store
from .hosts import Names
from .precedence import age

Rules = tuple[DestinationRule, ...]
"""The DestinationRules for one host, oldest first, at most one per namespace and
workload selector (of several, the oldest wins: creation time, then namespace/name)."""


def rules_by_host(store: Store, names: Names) -> dict[str, Rules]:
    out: dict[str, dict[tuple[str, ir.Labels], DestinationRule]] = {}
    for dr in sorted((d for d in store.of_kind("DestinationRule")), key=age):
        assert isinstance(dr, DestinationRule)
        slot = (dr.namespace, _selector(dr))
        out.setdefault(names.fqdn(dr.spec.host, dr.namespace), {}).setdefault(slot, dr)
    return {host: tuple(found.values()) for host, found in out.items()}


def _selector(dr: DestinationRule) -> ir.Labels:
    ws = dr.spec.workload_selector
    return ir.labels_of(dict(ws.match_labels)) if ws is not None else ()


def _universal(dr: DestinationRule, service_namespace: str, root_namespace: str) -> bool:
    """Seen by every client that has no closer rule: no selector, exported to all."""
    export = dr.spec.export_to
    return (
        (not export or "*" in export)
        and dr.namespace in (service_namespace, root_namespace)
        and dr.spec.workload_selector is None
    )


def public_rule(
    rules: Rules, service_namespace: str, root_namespace: str
) -> DestinationRule | None:
    """The rule a client without a rule of its own sees: the service's namespace's,
    else the root namespace's, when exported to every namespace. Routes take their
    consistent-hash settings from it."""
    if len(rules) == 1:  # the common case, on every route destination: keep it cheap
        only = rules[0]
        return only if _universal(only, service_namespace, root_namespace) else None
    found = [r for r in rules if _universal(r, service_namespace, root_namespace)]
    found.sort(key=lambda r: r.namespace != service_namespace)
    return found[0] if found else None


def variants(
    rules: Rules, service_namespace: str, root_namespace: str
) -> list[tuple[DestinationRule | None, ir.RuleScope | None]]:
    """The rule each variant of the host's clusters is built from, with the clients it
    is for. One unscoped variant when every client sees the same rule (the common
    case); otherwise one per rule, and one without a rule when some client may see
    none (Istio's lookup is `ir.RuleScope.rank`)."""
    public = public_rule(rules, service_namespace, root_namespace)
    if not rules or rules == (public,):
        return [(public, None)]
    out: list[tuple[DestinationRule | None, ir.RuleScope | None]] = [
        (
            r,
            ir.RuleScope(
                namespace=r.namespace,
                selector=_selector(r),
                export_to=tuple(r.spec.export_to) or ("*",),
                root=r.namespace == root_namespace,
            ),
        )
        for r in rules
    ]
    if public is None:
        out.append((None, ir.RuleScope(namespace="")))
    return out


def merge_traffic_policy(dr: DestinationRule | None, port: int, subset: str) -> TrafficPolicy:
    """The policy for one port of one subset, merged as Istio merges it: the rule's
    policy; its settings for this port replace load balancer, connection pool, outlier
    detection and TLS as a whole (omitted ones fall back to defaults, not to the
    rule's); then the subset's policy, field by field; then the subset's settings for
    this port, again as a whole."""
    if dr is None:
        return _NO_POLICY
    merged = _NO_POLICY
    top = dr.spec.traffic_policy
    if top is not None:
        merged = _at_port(top, port)
    for s in dr.spec.subsets:
        if s.name == subset and s.traffic_policy is not None:
            overrides = {
                f: getattr(s.traffic_policy, f)
                for f in _MERGED
                if getattr(s.traffic_policy, f) is not None
            }
            merged = _at_port(
                merged.model_copy(
                    update={
                        **overrides,
                        "port_level_settings": s.traffic_policy.port_level_settings,
                    }
                ),
                port,
            )
    return merged


_MERGED = (
    "load_balancer",
    "connection_pool",
    "outlier_detection",
    "tls",
    "tunnel",
    "proxy_protocol",
    "retry_budget",
)
_PORT_LEVEL = ("load_balancer", "connection_pool", "outlier_detection", "tls")


def _at_port(policy: TrafficPolicy, port: int) -> TrafficPolicy:
    """`policy` with its settings for `port` applied, and no port-level list left."""
    update: dict[str, object] = {"port_level_settings": ()}
    for pl in policy.port_level_settings:
        if pl.port is not None and pl.port.number == port:
            update.update({f: getattr(pl, f) for f in _PORT_LEVEL})
            break
    return policy.model_copy(update=update)


_NO_POLICY = TrafficPolicy()
_DEFAULT = ir.ClusterPolicy()


def cluster_policy(policy: TrafficPolicy) -> ir.ClusterPolicy:
    if policy is _NO_POLICY:
        return _DEFAULT  # most services have no DestinationRule
    pool = policy.connection_pool
    tcp = pool.tcp if pool is not None else None
    connect_timeout = tcp.connect_timeout if tcp is not None else None
    return ir.ClusterPolicy(
        lb=load_balancer(policy.load_balancer),
        connect_timeout=connect_timeout or ir.ClusterPolicy().connect_timeout,
        connection_pool=connection_pool(policy),
        outlier=outlier(policy.outlier_detection),
        locality=locality_lb(policy),
        tls=upstream_tls(policy.tls),
        mtls=mesh_mtls(policy.tls),
    )


def mesh_mtls(tls: ClientTLSSettings | None) -> ir.MtlsMode:
    """Istio's auto mTLS unless the rule says otherwise: ISTIO_MUTUAL always originates
    mesh mTLS, DISABLE never, SIMPLE and MUTUAL originate their own TLS instead."""
    if tls is None:
        return "auto"
    return "istio" if tls.mode == "ISTIO_MUTUAL" else "disable"


def upstream_tls(tls: ClientTLSSettings | None) -> ir.UpstreamTls | None:
    """SIMPLE and MUTUAL with certificate files, as Istio (ISTIO_MUTUAL and DISABLE are
    `mesh_mtls`). `credentialName` (a Secret served over SDS) is accepted, not applied
    yet."""
    if tls is None or tls.mode not in ("SIMPLE", "MUTUAL") or tls.credential_name:
        return None
    mutual = tls.mode == "MUTUAL"
    return ir.UpstreamTls(
        ca_file=None if tls.insecure_skip_verify else tls.ca_certificates,
        cert_file=tls.client_certificate if mutual else None,
        key_file=tls.private_key if mutual else None,
        sni=tls.sni,
        subject_alt_names=tls.subject_alt_names,
        crl_file=tls.ca_crl,
    )


def _specific_first(item: tuple[str, int]) -> tuple[int, str]:
    """Overlapping `to` patterns claim localities most specific first (Istio walks a
    map, in no particular order): `eu-west/eu-west-a/*` before `eu-west/*`."""
    concrete = sum(1 for part in item[0].split("/") if part not in ("", "*"))
    return (-concrete, item[0])


def locality_lb(policy: TrafficPolicy) -> ir.LocalityLb | None:
    """Istio's rule: locality load balancing is on (the mesh default) unless the rule
    says `enabled: false`; `distribute` applies as is, failover only with outlier
    detection (without it Envoy never leaves the nearest priority)."""
    setting = policy.load_balancer.locality_lb_setting if policy.load_balancer else None
    if setting is not None and setting.enabled is False:
        return None
    if setting is not None and setting.distribute:
        return ir.LocalityLb(
            distribute=tuple(
                (d.from_ or "*", tuple(sorted(d.to.items(), key=_specific_first)))
                for d in setting.distribute
            )
        )
    if policy.outlier_detection is None:
        return None
    failover = tuple(
        (f.from_, f.to) for f in (setting.failover if setting else ()) if f.from_ and f.to
    )
    priority = tuple(setting.failover_priority) if setting else ()
    return ir.LocalityLb(failover=failover, failover_priority=priority)


def _positive(value: int | None) -> int | None:
    """Istio reads 0 as "not set" for the connection pool's limits."""
    return value if value else None


def connection_pool(policy: TrafficPolicy) -> ir.ConnectionPool | None:
    pool, budget = policy.connection_pool, policy.retry_budget
    if pool is None and budget is None:
        return None
    tcp = pool.tcp if pool is not None else None
    http = pool.http if pool is not None else None
    keepalive = None
    if tcp is not None and tcp.tcp_keepalive is not None:
        k = tcp.tcp_keepalive
        keepalive = ir.TcpKeepalive(k.probes, k.time, k.interval)
    return ir.ConnectionPool(
        max_connections=_positive(tcp.max_connections) if tcp else None,
        max_pending_requests=_positive(http.http1_max_pending_requests) if http else None,
        max_requests=_positive(http.http2_max_requests) if http else None,
        max_retries=_positive(http.max_retries) if http else None,
        retry_budget=(
            (budget.percent if budget.percent is not None else 20.0, budget.min_retry_concurrency)
            if budget is not None
            else None
        ),
        max_requests_per_connection=_positive(http.max_requests_per_connection) if http else None,
        idle_timeout=http.idle_timeout if http else None,
        max_connection_duration=tcp.max_connection_duration if tcp else None,
        keepalive=keepalive,
        http2=http is not None and http.h2_upgrade_policy == "UPGRADE",
        use_client_protocol=bool(http and http.use_client_protocol),
        max_concurrent_streams=_positive(http.max_concurrent_streams) if http else None,
        h2_keepalive=(
            (http.http2_keep_alive.interval, http.http2_keep_alive.timeout)
            if http is not None and http.http2_keep_alive is not None
            else None
        ),
    )


def outlier(od: OutlierDetection | None) -> ir.Outlier | None:
    if od is None:
        return None
    five_xx = od.consecutive_5xx_errors
    if five_xx is None:
        five_xx = od.consecutive_errors  # Istio's deprecated name for it
    return ir.Outlier(
        consecutive_5xx=five_xx,
        consecutive_gateway=od.consecutive_gateway_errors,
        consecutive_local_origin=od.consecutive_local_origin_failures,
        split_local_origin=bool(od.split_external_local_origin_errors),
        interval=od.interval,
        base_ejection_time=od.base_ejection_time,
        max_ejection_percent=od.max_ejection_percent or None,
        min_health_percent=od.min_health_percent or 0,
    )


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
    policy = _SIMPLE[settings.simple or "ROUND_ROBIN"]
    warmup = None
    if settings.warmup is not None:
        w = settings.warmup
        warmup = ir.Warmup(w.duration, w.minimum_percent, w.aggression)
    elif settings.warmup_duration_secs is not None:
        warmup = ir.Warmup(settings.warmup_duration_secs)
    if policy not in ("ROUND_ROBIN", "LEAST_REQUEST"):
        warmup = None  # Envoy's slow start exists for these two only
    return ir.LoadBalancer(policy, warmup=warmup)


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

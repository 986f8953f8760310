"""The mesh IR: plain frozen data between API translation and Envoy translation.

The operator side resolves Istio semantics (host names, subsets, which
VirtualService applies, endpoint selection) into these values; the xDS side turns
them into Envoy resources for one proxy at a time. Everything here is hashable, so
the encoder can cache Envoy bytes per IR value and re-encode only what changed.
Per-proxy decisions that depend on who is asking (source labels and namespace,
exportTo, short host names) are carried as data and evaluated on the xDS side.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Discriminator, Tag

Labels = tuple[tuple[str, str], ...]
"""Sorted (key, value) pairs: a hashable label map."""

MatchKind = Literal["exact", "prefix", "regex"]


_T = TypeVar("_T")


def _hash_once(cls: type[_T]) -> type[_T]:
    """Cache the hash of a large frozen value: the encoder keys its cache by IR values,
    and recomputing a deep hash for every resource on every push costs more than
    the lookup saves. (The classes this decorates have no __slots__, so the cached
    value can live in the instance's __dict__, which a frozen dataclass leaves writable.)"""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def __hash__(self: Any) -> int:
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = self.__dict__["_hash"] = hash(tuple(getattr(self, n) for n in names))
        return cached

    cls.__hash__ = __hash__  # type: ignore[method-assign]
    return cls


def labels_of(mapping: dict[str, str] | None) -> Labels:
    return tuple(sorted((mapping or {}).items()))


def labels_match(selector: Labels, labels: Labels) -> bool:
    have = dict(labels)
    return all(have.get(k) == v for k, v in selector)


# ---------------------------------------------------------------- matching


@dataclass(frozen=True, slots=True)
class StringMatch:
    kind: MatchKind
    value: str
    ignore_case: bool = False


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """A request header condition; pseudo-headers (:authority, :method, :scheme) too.

    `match` None means the header must be present (or absent when `invert`).
    """

    name: str
    match: StringMatch | None = None
    invert: bool = False


@dataclass(frozen=True, slots=True)
class QueryMatch:
    name: str
    match: StringMatch | None = None


@dataclass(frozen=True, slots=True)
class SourceSelector:
    """Which client proxies a match applies to (Istio's sourceLabels/sourceNamespace)."""

    labels: Labels = ()
    namespace: str | None = None

    def selects(self, namespace: str, labels: Labels) -> bool:
        if self.namespace is not None and self.namespace != namespace:
            return False
        return labels_match(self.labels, labels)


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path: StringMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    source: SourceSelector | None = None
    peer_tls: bool | None = None
    """Inbound only: True, the request came over mutual TLS with a valid peer
    certificate; False, it did not (port-level PeerAuthentication in local mode)."""


# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True, slots=True)
class Headers:
    request: HeaderOps = HeaderOps()
    response: HeaderOps = HeaderOps()


@dataclass(frozen=True, slots=True)
class WeightedCluster:
    cluster: str
    weight: int
    headers: Headers = Headers()


@dataclass(frozen=True, slots=True)
class Rewrite:
    prefix: str | None = None
    regex: tuple[str, str] | None = None
    """(pattern, substitution)"""
    authority: str | None = None


@dataclass(frozen=True, slots=True)
class HashPolicy:
    """One consistent-hash key, from the destination's DestinationRule."""

    kind: Literal["header", "cookie", "source_ip", "query"]
    name: str = ""
    cookie_ttl: timedelta | None = None
    cookie_path: str | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    """Istio's retry policy, resolved (the mesh default included)."""

    attempts: int
    retry_on: tuple[str, ...]
    """Envoy's retry conditions (HTTP and gRPC)."""
    status_codes: tuple[int, ...] = ()
    """For `retriable-status-codes`."""
    per_try_timeout: timedelta | None = None
    other_hosts: bool = True
    """Retry on a host not tried yet, when there is one."""
    other_localities: bool = False
    """Retry in other localities (Istio's retryRemoteLocalities)."""
    backoff: timedelta | None = None


@dataclass(frozen=True, slots=True)
class FaultDelay:
    duration: timedelta
    per_million: int
    """Share of requests delayed, in millionths (Istio's percentage times 10,000)."""


@dataclass(frozen=True, slots=True)
class FaultAbort:
    per_million: int
    http_status: int | None = None
    grpc_status: int | None = None


@dataclass(frozen=True, slots=True)
class Fault:
    """Istio's fault injection on one route."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True)
class Mirror:
    """A copy of the request, sent to `cluster` and its answer dropped."""

    cluster: str
    per_million: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Cors:
    """Istio's corsPolicy: the sidecar answers preflights and adds the CORS headers."""

    origins: tuple[StringMatch, ...] = ()
    methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: timedelta | None = None
    credentials: bool | None = None
    forward_unmatched_preflights: bool = True
    """Istio's unmatchedPreflights FORWARD (the default); IGNORE answers them itself."""


@dataclass(frozen=True, slots=True)
class Traffic:
    """What a route does to the requests it forwards besides choosing clusters: Istio's
    per-route resilience. Each field is one feature module on the xDS side."""

    timeout: timedelta | None = None
    """The whole request, retries included; 0 turns Envoy's 15 s default off."""
    retry: Retry | None = None
    """None: no retries (`attempts: 0`, or a route that is not Istio's, e.g. inbound)."""
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    cors: Cors | None = None


@dataclass(frozen=True, slots=True)
class Forward:
    clusters: tuple[WeightedCluster, ...]
    rewrite: Rewrite | None = None
    hash_policy: tuple[HashPolicy, ...] = ()
    traffic: Traffic = Traffic()


@dataclass(frozen=True, slots=True)
class Redirect:
    path: str | None = None
    prefix_rewrite: str | None = None
    """Replaces the matched prefix (Istio's redirect `prefixRewrite`)."""
    authority: str | None = None
    scheme: str | None = None
    port: int | None = None
    code: int = 301


@dataclass(frozen=True, slots=True)
class DirectResponse:
    status: int
    body: str | None = None


def _action_kind(value: object) -> str:
    """Tells the three actions apart when the IR is read back from YAML (golden tests)."""
    if isinstance(value, dict):
        return "forward" if "clusters" in value else "direct" if "status" in value else "redirect"
    return {Forward: "forward", DirectResponse: "direct"}.get(type(value), "redirect")


Action = Annotated[
    Annotated[Forward, Tag("forward")]
    | Annotated[Redirect, Tag("redirect")]
    | Annotated[DirectResponse, Tag("direct")],
    Discriminator(_action_kind),
]


@_hash_once
@dataclass(frozen=True)
class Route:
    name: str
    """Where it came from: `<ns>/<virtualservice>/http/<i>/match/<j>` or `default`."""
    match: RouteMatch
    action: Action
    headers: Headers = Headers()
    service: tuple[str, ...] = ()
    """An inbound route's service (hostname, name, namespace): what the server's
    metrics report as destination_service."""


# ---------------------------------------------------------------- services


@dataclass(frozen=True, slots=True)
class L4Match:
    """One match block of a VirtualService `tcp` or `tls` route (its port is already
    applied). The destination subnets and SNI names become a filter chain's match;
    the source is evaluated per client proxy."""

    destination_subnets: tuple[str, ...] = ()
    sni_hosts: tuple[str, ...] = ()
    source: SourceSelector | None = None


@dataclass(frozen=True, slots=True)
class L4Route:
    """A `tcp` or `tls` route for one match block: connections it matches go to
    weighted clusters as a TCP proxy (no HTTP is parsed)."""

    name: str
    match: L4Match
    clusters: tuple[WeightedCluster, ...]


@_hash_once
@dataclass(frozen=True)
class RouteTable:
    """One VirtualService's routes for one service port, and who may use them."""

    source: str
    """namespace/name of the VirtualService"""
    namespace: str
    routes: tuple[Route, ...]
    export_to: tuple[str, ...] = ("*",)
    l4_routes: tuple[L4Route, ...] = ()
    """Its `tcp` routes (TCP ports) or `tls` routes (TLS ports)."""


@_hash_once
@dataclass(frozen=True)
class VirtualHost:
    """One service port as clients see it: HTTP routing, or TCP/TLS routes."""

    hostname: str
    """Fully qualified: reviews.default.svc.cluster.local"""
    port: int
    namespace: str
    aliases: tuple[str, ...]
    """Other names usable from any namespace (reviews.default.svc, reviews.default)."""
    short_name: str | None
    """Usable only from the service's own namespace (reviews)."""
    routes: tuple[Route, ...]
    """The service's default routing, for proxies no VirtualService of it is exported to."""
    tables: tuple[RouteTable, ...] = ()
    """VirtualServices for this host, oldest first; a proxy uses the first it can see."""
    export_to: tuple[str, ...] = ("*",)
    """Who sees the service at all (the Service's networking.istio.io/exportTo)."""
    addresses: tuple[str, ...] = ()
    """The service's virtual IPs (spec.clusterIP): with iptables capture a client may
    call the address itself, so it is a domain too. Local mode has no use for them."""
    protocol: str = "http"
    """The port's protocol (Istio's selection). TCP and TLS ports are not routed by
    HTTP: their `l4_routes` become filter chains of a TCP proxy."""
    l4_routes: tuple[L4Route, ...] = ()
    """The default for a TCP or TLS port (to the service), like `routes` for HTTP;
    never empty there, always empty on an HTTP port."""

    @functools.cached_property
    def name(self) -> str:
        return f"{self.hostname}:{self.port}"

    @functools.cached_property
    def proxying(self) -> Proxying:
        return proxying_of(self.protocol)

    def routes_for(self, namespace: str) -> tuple[Route, ...]:
        table = self.table_for(namespace)
        return self.routes if table is None else table.routes

    def l4_routes_for(self, namespace: str) -> tuple[L4Route, ...]:
        table = self.table_for(namespace)
        return self.l4_routes if table is None else table.l4_routes

    def table_for(self, namespace: str) -> RouteTable | None:
        """The first VirtualService for this host exported to `namespace`."""
        for table in self.tables:
            if visible(table.export_to, table.namespace, namespace):
                return table
        return None


@dataclass(frozen=True, slots=True)
class Locality:
    """Where an endpoint runs (the node's topology labels), for locality-aware balancing."""

    region: str = ""
    zone: str = ""
    subzone: str = ""


@dataclass(frozen=True, slots=True)
class Workload:
    """Who a pod is, as Istio's standard metrics label it (source_* / destination_*)."""

    name: str
    """The workload: its Deployment (or other controller), else the pod."""
    namespace: str
    app: str = "unknown"
    version: str = "unknown"
    canonical_service: str = "unknown"
    canonical_revision: str = "latest"
    principal: str = "unknown"
    """Its SPIFFE identity when a sidecar fronts it (it speaks mTLS), else unknown."""


@dataclass(frozen=True, slots=True)
class GatewayHost:
    """A virtual host of a gateway port: the names it answers to and the routes the
    VirtualServices bound to the gateway give them."""

    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    https_redirect: bool = False
    """Answer every request with a redirect to https (its server's tls.httpsRedirect)."""


@dataclass(frozen=True, slots=True)
class ServerTls:
    """How a gateway server terminates TLS (a Gateway server's `tls`)."""

    mode: Literal["SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL"]
    credential: str
    """The SDS name of its certificate (`kubernetes://<credentialName>`); MUTUAL's client
    CA is `<credential>-cacert`. Empty: ISTIO_MUTUAL (the gateway's own workload
    certificate, clients checked against the mesh roots) or `files`."""
    sni: tuple[str, ...] = ()
    """The server names it answers (empty: any)."""
    min_version: str = ""
    max_version: str = ""
    """TLSV1_0 ... TLSV1_3 (empty: Envoy's default)."""
    cipher_suites: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()
    """MUTUAL: the client certificate must carry one of these."""
    files: tuple[str, str, str] = ("", "", "")
    """Certificate, key and client CA as paths in the gateway's filesystem (Gateway
    `serverCertificate`, `privateKey`, `caCertificates`), read by Envoy itself."""
    more_certificates: tuple[tuple[str, str], ...] = ()
    """Further (certificate, key) files (`tlsCertificates`: RSA and ECDSA, say)."""
    accept_untrusted: bool = False
    """`insecureSkipVerify`: a client certificate that fails verification is let through
    (the Gateway API's AllowInsecureFallback)."""


@dataclass(frozen=True, slots=True)
class GatewayServer:
    """One port a gateway serves: plaintext servers of the Gateways selecting it merged
    by port; a TLS-terminating server is its own (a filter chain picked by SNI)."""

    port: int
    protocol: str
    """Istio's, upper case: HTTP, HTTPS, HTTP2, GRPC, TCP, TLS..."""
    hosts: tuple[GatewayHost, ...] = ()
    tls: ServerTls | None = None
    name: str = ""
    """Its route table's name (unique on the proxy)."""
    l4_routes: tuple[L4Route, ...] = ()
    """A TLS PASSTHROUGH server: the bound VirtualServices' `tls` routes (by SNI)."""
    auto_passthrough: tuple[str, ...] = ()
    """A TLS AUTO_PASSTHROUGH server's host names: a connection whose SNI is a mesh
    cluster's (`outbound_.<port>_.<subset>_.<host>`) goes to that cluster as is."""


@dataclass(frozen=True, slots=True)
class Collector:
    """A telemetry service a proxy sends to (a tracing or logging provider): the
    outbound cluster of its mesh service."""

    cluster: str
    authority: str
    """host:port, the Host / :authority of what is sent."""


@dataclass(frozen=True, slots=True)
class AccessLog:
    """Where and how a proxy logs each request: a file (Istio's accessLogFile, or an
    envoyFileAccessLog provider) or an OpenTelemetry collector (envoyOtelAls)."""

    path: str = ""
    encoding: Literal["TEXT", "JSON"] = "TEXT"
    format: str = ""
    """TEXT: a format string; JSON: a JSON object text; empty: Istio's default."""
    otel: Collector | None = None
    """Set: records go to this OTLP/gRPC logs service instead of a file."""
    log_name: str = ""
    """OpenTelemetry: the log name the collector sees."""
    labels: tuple[tuple[str, str], ...] = ()
    """OpenTelemetry: record attributes (name, format string)."""
    filter: str = ""
    """A CEL expression: only requests for which it is true are logged (empty: all)."""


@dataclass(frozen=True, slots=True)
class MetricOverride:
    """A Telemetry `metrics.overrides` entry, as it applies to one side of a proxy."""

    metric: str
    """Istio's name (REQUEST_COUNT, ...) or ALL_METRICS."""
    disabled: bool | None = None
    tags: tuple[tuple[str, str | None], ...] = ()
    """tag -> CEL expression for its value (UPSERT), or None (REMOVE)."""


@dataclass(frozen=True, slots=True)
class TracingProvider:
    kind: Literal["zipkin", "opentelemetry"]
    collector: Collector
    path: str = ""
    """Zipkin: where spans are posted; OpenTelemetry: the OTLP/HTTP path (empty:
    OTLP/gRPC)."""
    max_tag_length: int = 256
    w3c: bool = False
    """Zipkin: propagate W3C trace context along with B3."""
    service_name: str = ""
    """OpenTelemetry: the service the spans are reported for."""
    headers: tuple[tuple[str, str], ...] = ()
    """OpenTelemetry over HTTP: headers added to each export."""
    timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class CustomTag:
    tag: str
    kind: Literal["literal", "environment", "header", "formatter"]
    value: str
    """literal: the value; environment: the variable; header: the request header;
    formatter: an access-log format string (`%REQ(:AUTHORITY)%`)."""
    default: str = ""


@dataclass(frozen=True, slots=True)
class Tracing:
    """Istio's Telemetry tracing, resolved for one side of a proxy."""

    provider: TracingProvider | None
    """None: spans are not reported (disableSpanReporting)."""
    sampling: float = 1.0
    """Percent of the requests that start a trace here (an incoming sampled trace
    context is followed whatever this says)."""
    custom_tags: tuple[CustomTag, ...] = ()
    propagate: bool = True
    """False (disableContextPropagation): no trace context headers are written."""


@dataclass(frozen=True, slots=True)
class SideTelemetry:
    """What one side of a proxy (client: its outbound listeners; server: its inbound
    ones) reports."""

    metrics: bool = True
    overrides: tuple[MetricOverride, ...] = ()
    tracing: Tracing | None = None
    access_logs: tuple[AccessLog, ...] = ()


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Istio's Telemetry API (and the mesh config's defaults) resolved for a proxy.
    The default reports the standard metrics, no traces and no access log."""

    client: SideTelemetry = SideTelemetry()
    server: SideTelemetry = SideTelemetry()

    def side(self, outbound: bool) -> SideTelemetry:
        return self.client if outbound else self.server


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    healthy: bool = True
    locality: Locality | None = None
    failover: tuple[str, ...] = ()
    """The endpoint's values of its cluster's `failoverPriority` labels, in order (only
    when the cluster has them)."""
    mtls: bool = False
    """A sidecar in front of it accepts mutual TLS (Istio's `tlsMode: istio` label):
    auto mTLS originates mTLS to it, plaintext to the others."""
    workload: Workload | None = None
    """The pod behind it (metrics label requests with it); None: not a known pod."""


MtlsMode = Literal["auto", "istio", "disable"]
PeerMode = Literal["STRICT", "PERMISSIVE", "DISABLE"]


@dataclass(frozen=True, slots=True)
class PeerAuth:
    """What the workload's sidecar accepts from peers (PeerAuthentication, resolved):
    STRICT mutual TLS only, PERMISSIVE both on the same port, DISABLE plaintext only."""

    mode: PeerMode = "PERMISSIVE"
    ports: tuple[tuple[int, PeerMode], ...] = ()
    """Per app port overrides (portLevelMtls)."""

    def for_port(self, port: int) -> PeerMode:
        return next((m for p, m in self.ports if p == port), self.mode)


@dataclass(frozen=True, slots=True)
class AuthzSource:
    """One `from.source` of an AuthorizationPolicy rule: every field set must hold."""

    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()
    trust_domains: tuple[str, ...] = ()
    not_trust_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthzOperation:
    """One `to.operation`: every field set must hold."""

    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    not_ports: tuple[int, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthzCondition:
    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthzRule:
    """Matches when any source (or none given), any operation (or none given) and
    every condition match."""

    sources: tuple[AuthzSource, ...] = ()
    operations: tuple[AuthzOperation, ...] = ()
    conditions: tuple[AuthzCondition, ...] = ()


@dataclass(frozen=True, slots=True)
class ExtAuthz:
    """An external authorization service (a MeshConfig extension provider): a request
    a CUSTOM policy's rule matches is sent there first, and refused if it says no."""

    provider: str
    cluster: str
    """The service's outbound cluster."""
    authority: str
    """host:port of the service."""
    grpc: bool = False
    timeout: timedelta | None = None
    path_prefix: str = ""
    fail_open: bool = False
    status_on_error: int | None = None
    request_headers: tuple[str, ...] = ()
    """Client headers sent to the service besides Envoy's defaults."""
    additional_headers: tuple[tuple[str, str], ...] = ()
    upstream_headers: tuple[str, ...] = ()
    """Response headers of the service copied to the request on allow."""
    client_headers_on_deny: tuple[str, ...] = ()
    client_headers_on_allow: tuple[str, ...] = ()
    body_max_bytes: int | None = None
    """Send the request body (up to this many bytes); None: no body."""
    body_partial: bool = False
    body_as_bytes: bool = False


@dataclass(frozen=True, slots=True)
class AuthzPolicy:
    """An AuthorizationPolicy that applies to the proxy's workload."""

    name: str
    """namespace/name"""
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]
    rules: tuple[AuthzRule, ...] = ()
    """None: matches nothing (an ALLOW policy without rules allows nothing)."""
    provider: ExtAuthz | None = None
    """CUSTOM: where matching requests are checked."""


@dataclass(frozen=True, slots=True)
class JwtRule:
    """One `jwtRules` entry of a RequestAuthentication that applies to the workload."""

    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str | None = None
    """The JWK set inline, or fetched by the sidecar from `jwks_uri`."""
    jwks_uri: str | None = None
    from_headers: tuple[tuple[str, str], ...] = ()
    """(header, value prefix); none given: Authorization: Bearer (or access_token)."""
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    payload_header: str | None = None
    forward: bool = False
    claim_headers: tuple[tuple[str, str], ...] = ()
    """(header, claim)"""
    timeout: timedelta | None = None
    space_delimited_claims: tuple[str, ...] = ()
    """Claims split on spaces into lists (so `claims[scope]` matches one scope)."""


LbPolicy = Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH", "RING_HASH", "MAGLEV"]


@dataclass(frozen=True, slots=True)
class Warmup:
    """Slow start: a new endpoint's share ramps up over `duration`."""

    duration: timedelta
    min_percent: float | None = None
    aggression: float | None = None


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    policy: LbPolicy = "ROUND_ROBIN"
    ring_size: int | None = None
    table_size: int | None = None
    warmup: Warmup | None = None
    """ROUND_ROBIN and LEAST_REQUEST only (Envoy's slow start, as Istio)."""


@dataclass(frozen=True, slots=True)
class TcpKeepalive:
    probes: int | None = None
    time: timedelta | None = None
    interval: timedelta | None = None


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    """Istio's connectionPool (and retryBudget): None means unlimited (Istio's default)."""

    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_requests: int | None = None
    max_retries: int | None = None
    retry_budget: tuple[float, int | None] | None = None
    """(percent of active requests, minimum retry concurrency)"""
    max_requests_per_connection: int | None = None
    idle_timeout: timedelta | None = None
    max_connection_duration: timedelta | None = None
    keepalive: TcpKeepalive | None = None
    http2: bool = False
    """h2UpgradePolicy UPGRADE: speak HTTP/2 to the upstream."""
    use_client_protocol: bool = False
    max_concurrent_streams: int | None = None
    h2_keepalive: tuple[timedelta, timedelta] | None = None
    """http2KeepAlive (interval, timeout): HTTP/2 PINGs on upstream HTTP/2 connections."""


@dataclass(frozen=True, slots=True)
class Outlier:
    """Istio's outlierDetection."""

    consecutive_5xx: int | None = None
    consecutive_gateway: int | None = None
    consecutive_local_origin: int | None = None
    split_local_origin: bool = False
    interval: timedelta | None = None
    base_ejection_time: timedelta | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int = 0


@dataclass(frozen=True, slots=True)
class LocalityLb:
    """Istio's locality load balancing, evaluated per client proxy (its own locality):
    `distribute` weights localities; otherwise endpoints are prioritised nearest first
    (same zone and subzone, same zone, same region, elsewhere; `failover` names the
    region to fall back to), which needs outlier detection to ever fail over."""

    distribute: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()
    """(from, ((to, weight), ...)) with Istio's region/zone/subzone wildcards."""
    failover: tuple[tuple[str, str], ...] = ()
    """(from region, to region)"""
    failover_priority: tuple[str, ...] = ()
    """Label keys, most important first: an endpoint matching the client on all of them
    comes first, then on all but the last, and so on (Istio's failoverPriority)."""


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """TLS the sidecar originates to a non-mesh upstream (DestinationRule `tls` SIMPLE or
    MUTUAL, with files; ISTIO_MUTUAL belongs to the security issue)."""

    ca_file: str | None = None
    """None: the server certificate is not verified (insecureSkipVerify)."""
    cert_file: str | None = None
    key_file: str | None = None
    sni: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    crl_file: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    """A DestinationRule's traffic policy as it applies to one cluster (merged for its
    port and subset as Istio merges it). Each field is one feature module on the
    xDS side."""

    lb: LoadBalancer = LoadBalancer()
    connect_timeout: timedelta = timedelta(seconds=10)
    connection_pool: ConnectionPool | None = None
    outlier: Outlier | None = None
    locality: LocalityLb | None = None
    """None: endpoints are balanced without regard to where the client is."""
    tls: UpstreamTls | None = None
    mtls: MtlsMode = "auto"
    """Mesh mTLS to this upstream: `auto` (to endpoints with a sidecar), `istio`
    (DestinationRule ISTIO_MUTUAL: always), `disable` (DISABLE, or SIMPLE/MUTUAL)."""


@dataclass(frozen=True, slots=True)
class RuleScope:
    """Which clients a variant of a cluster is for, when DestinationRules for its host
    differ by client (exportTo, workloadSelector, namespace). Istio's lookup, per
    client: a rule in the client's own namespace (one whose workloadSelector matches
    the client first), then the service's namespace, then the root namespace (rules
    exported to the client's namespace), then no rule at all."""

    namespace: str
    """The DestinationRule's namespace; "" for the variant without a rule."""
    selector: Labels = ()
    export_to: tuple[str, ...] = ("*",)
    root: bool = False
    """The rule is in the mesh's root namespace."""

    def rank(self, service_namespace: str, namespace: str, labels: Labels) -> int | None:
        """How well this variant fits a client (lower wins); None: not for it."""
        if not self.namespace:
            return 4
        if self.namespace == namespace:
            if self.selector:
                return 0 if labels_match(self.selector, labels) else None
            return 1
        if self.selector or not visible(self.export_to, self.namespace, namespace):
            return None  # a workloadSelector rule is for its own namespace only
        if self.namespace == service_namespace:
            return 2
        return 3 if self.root else None


Discovery = Literal["eds", "strict_dns", "logical_dns", "original_dst"]


@_hash_once
@dataclass(frozen=True)
class Cluster:
    """One upstream: a service port, or one subset of it."""

    hostname: str
    port: int
    subset: str
    namespace: str
    endpoints: tuple[Endpoint, ...]
    policy: ClusterPolicy = ClusterPolicy()
    export_to: tuple[str, ...] = ("*",)
    protocol: str = "http"
    """The service port's protocol (Istio's selection from appProtocol or the port
    name): http2, grpc and grpc-web are spoken to the upstream over HTTP/2."""
    identities: tuple[str, ...] = ()
    """The SPIFFE identities of its endpoints' workloads: the certificate an mTLS
    peer presents must carry one of them."""
    scope: RuleScope | None = None
    """None: the one variant of this cluster. Otherwise the mesh holds one variant per
    DestinationRule that may apply (and one without), and each client gets the
    variant whose scope ranks best for it."""
    discovery: Discovery = "eds"
    """How the proxy finds its endpoints: `eds` (sent by the control plane), or, for
    ServiceEntry resolutions, `strict_dns` (DNS: every address the names resolve to),
    `logical_dns` (DNS_ROUND_ROBIN: one connection target per name) and
    `original_dst` (NONE: where the client was going)."""

    @functools.cached_property
    def name(self) -> str:
        return outbound_cluster_name(self.hostname, self.port, self.subset)


HTTP2_PROTOCOLS = frozenset({"http2", "grpc", "grpc-web"})
TLS_PROTOCOLS = frozenset({"tls", "https"})
"""Proxied as TLS: routed by SNI (VirtualService `tls` routes), never decrypted."""
TCP_PROTOCOLS = frozenset({"tcp", "mongo", "mysql", "redis"})
"""Proxied as plain TCP (VirtualService `tcp` routes), as Istio does by default."""
Proxying = Literal["http", "tcp", "tls"]


def proxying_of(protocol: str) -> Proxying:
    """How a port's connections are proxied: HTTP routing, a TCP proxy, or by SNI."""
    if protocol in TLS_PROTOCOLS:
        return "tls"
    if protocol in TCP_PROTOCOLS:
        return "tcp"
    return "http"


REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"


def label_value(labels: Labels, locality: Locality | None, key: str) -> str:
    """A label as Istio's failoverPriority reads it: the workload's own labels, with its
    node's topology (region, zone, subzone) added."""
    if locality is not None:
        topology = {REGION_LABEL: locality.region, ZONE_LABEL: locality.zone}
        topology[SUBZONE_LABEL] = locality.subzone
        if key in topology:
            return topology[key]
    return dict(labels).get(key, "")


def outbound_cluster_name(hostname: str, port: int, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{hostname}"


def inbound_cluster_name(port: int) -> str:
    return f"inbound|{port}||"


def visible(export_to: tuple[str, ...], owner_namespace: str, namespace: str) -> bool:
    """Istio's exportTo: '*' everyone, '.' the owner's namespace, or named namespaces."""
    for entry in export_to:
        if entry == "*" or entry == namespace:
            return True
        if entry == "." and owner_namespace == namespace:
            return True
    return False


# ---------------------------------------------------------------- proxies


@dataclass(frozen=True, slots=True)
class Inbound:
    """A service port that reaches this workload, and the app port it lands on."""

    hostname: str
    aliases: tuple[str, ...]
    short_name: str | None
    service_port: int
    target_port: int
    protocol: str = "http"
    """The service port's protocol (Istio's selection): HTTP/2 and gRPC reach the app
    over HTTP/2."""


@dataclass(frozen=True, slots=True)
class EgressImport:
    """One Sidecar `egress[].hosts` entry, resolved for a proxy: the services of
    `namespace` (`*`: any) whose host name matches `host` (`*`, `*.suffix` or exact), on
    `port` (None: every port; a port: that egress listener's only)."""

    namespace: str
    host: str
    port: int | None = None

    def imports(self, hostname: str, namespace: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.namespace not in ("*", namespace):
            return False
        if self.host == "*":
            return True
        if self.host.startswith("*."):
            return hostname.endswith(self.host[1:])
        return hostname == self.host


@dataclass(frozen=True, slots=True)
class IngressListener:
    """A Sidecar `ingress[]` listener: requests for the workload's `port` go to
    `endpoint` (host, port) or a unix socket path (`unix://...`)."""

    port: int
    protocol: str
    endpoint: tuple[str, int] | str
    pool: ConnectionPool | None = None
    """Its own connectionPool (else the Sidecar's inboundConnectionPool)."""


@_hash_once
@dataclass(frozen=True)
class Proxy:
    """One sidecar: the workload it fronts and how traffic reaches it."""

    id: str
    name: str
    namespace: str
    ip: str
    labels: Labels = ()
    app_ports: tuple[int, ...] = ()
    inbound: tuple[Inbound, ...] = ()
    capture: Literal["local", "iptables"] = "local"
    """The listener layout. `local`: no iptables; clients use ip:15001 as an HTTP
    proxy, peers ip:15006. `iptables`: the pod's traffic is redirected to 15001
    (outbound) and 15006 (inbound), and the listeners route on the original
    destination."""
    kind: Literal["sidecar", "gateway"] = "sidecar"
    """A sidecar in front of its pod's app, or a gateway (an Envoy of its own at the
    mesh's edge, serving its Gateways' `servers`)."""
    servers: tuple[GatewayServer, ...] = ()
    """A gateway's ports (empty for a sidecar)."""
    identity: str = ""
    """The workload's SPIFFE identity: spiffe://<trust domain>/ns/<ns>/sa/<account>."""
    locality: Locality | None = None
    """Where it runs (its node's topology labels): locality-aware load balancing
    prefers endpoints near it."""
    peer_auth: PeerAuth = PeerAuth()
    workload: Workload | None = None
    """Its own workload (metrics label what it sends and receives with it)."""
    telemetry: Telemetry = Telemetry()
    """Metrics, traces and access logs, per side (Telemetry API and mesh config)."""
    authz: tuple[AuthzPolicy, ...] = ()
    jwt: tuple[JwtRule, ...] = ()
    """RequestAuthentication rules for this workload: a token that fails them is
    refused (401); a request without one passes (AuthorizationPolicy decides)."""
    """AuthorizationPolicies selecting this workload, oldest first (Istio evaluates
    DENY, then ALLOW: with any ALLOW policy, a request none allows is refused)."""
    outbound_policy: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"
    """Istio's outboundTrafficPolicy: a destination the mesh does not know passes
    through (ALLOW_ANY) or is refused (REGISTRY_ONLY: HTTP 502, TCP closed)."""
    egress_imports: tuple[EgressImport, ...] | None = None
    """Its Sidecar's egress scope (`translate/sidecar_scope.py`): None sees every service
    exported to it; otherwise only the services an import matches, plus the destinations
    their routes name (empty: none, Istio's `~/*`)."""
    ingress: tuple[IngressListener, ...] = ()
    """Its Sidecar's ingress listeners: the app ports they name go to their endpoints."""
    inbound_pool: ConnectionPool | None = None
    """Its Sidecar's inboundConnectionPool: limits on the inbound clusters."""
    on_demand: bool = False
    """Scoped: the sidecar fetches each HTTP service when its workload first calls it
    (VHDS over Delta xDS; xds `translate/scoping.py`) instead of being sent them all."""


@dataclass(frozen=True, slots=True)
class Mesh:
    virtual_hosts: tuple[VirtualHost, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    proxies: tuple[Proxy, ...] = field(default=())

    def proxy(self, proxy_id: str) -> Proxy | None:
        return next((p for p in self.proxies if p.id == proxy_id), None)

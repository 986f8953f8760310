"""Istio's networking.istio.io API: VirtualService and DestinationRule, with their validation.

Field lists follow Istio's reference so existing manifests apply unchanged; the checks are the
ones that keep a bad object away from Envoy, each reported against the user's field path.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, ClassVar, Literal, Self

import re2
from annotated_types import Ge, Le
from pydantic import AfterValidator, Field, Strict, StringConstraints, model_validator

from .errors import invalid
from .meta import (
    Bool,
    Duration,
    IstioModel,
    IstioResource,
    Percentage,
    Port,
    PositiveDuration,
    Str,
    StrMap,
    UInt32,
    UInt64,
)

NETWORKING_VERSIONS = (
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
)

NonEmptyStr = Annotated[str, Strict(), StringConstraints(min_length=1)]
Weight = Annotated[int, Strict(), Ge(0), Le(2**31 - 1)]
Count = Annotated[int, Strict(), Ge(0), Le(2**31 - 1)]
WholePercent = Annotated[int, Strict(), Ge(0), Le(100)]
HttpStatus = Annotated[int, Strict(), Ge(200), Le(599)]
RedirectCode = Annotated[int, Strict(), Ge(300), Le(399)]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error goes to the user, not to stderr


# Envoy refuses (NACKs) regexes whose compiled RE2 program is larger than this by default
# (runtime key re2.max_program_size.error_level): catch it here, with the field path.
ENVOY_MAX_PROGRAM_SIZE = 100


def _check_re2(pattern: str) -> str:
    # Envoy matches with RE2; Python's re accepts things (lookaround, backrefs) RE2 rejects.
    try:
        compiled = re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(f"not a valid RE2 regex: {detail}") from None
    if compiled.programsize > ENVOY_MAX_PROGRAM_SIZE:
        raise ValueError(
            f"regex too complex for Envoy: RE2 program size {compiled.programsize} > "
            f"{ENVOY_MAX_PROGRAM_SIZE}"
        )
    return pattern


Regex = Annotated[str, Strict(), AfterValidator(_check_re2)]


def _is_set(value: object) -> bool:
    return value is not None and value != () and value != {}


def _one_of(model: IstioModel, *names: str, required: bool = False) -> None:
    """Enforce a proto one-of: at most one of ``names`` set (exactly one if ``required``)."""
    fields = type(model).model_fields
    wire = [fields[n].alias or n for n in names]
    chosen = [w for n, w in zip(names, wire, strict=True) if _is_set(getattr(model, n))]
    if len(chosen) > 1:
        raise invalid(f"only one of {', '.join(wire)} may be set (got {', '.join(chosen)})")
    if required and not chosen:
        raise invalid(f"must set one of {', '.join(wire)}")


def _weights(
    dests: tuple[HTTPRouteDestination, ...] | tuple[RouteDestination, ...], at: str
) -> None:
    # A lone destination gets everything whatever its weight; several must not all be 0,
    # otherwise nothing would receive traffic. Totals other than 100 are normalised.
    if len(dests) > 1 and all(d.weight == 0 for d in dests):
        raise invalid("weights must not all be zero when there are several destinations", at)


# --- shared messages -------------------------------------------------------------------


class PortSelector(IstioModel):
    number: Port


class Percent(IstioModel):
    value: Percentage = 0.0


class Destination(IstioModel):
    host: NonEmptyStr
    subset: Str | None = None
    port: PortSelector | None = None


class StringMatch(IstioModel):
    """exact | prefix | regex; an empty match means "present" where Istio allows it."""

    exact: Str | None = None
    prefix: Str | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        _one_of(self, "exact", "prefix", "regex")
        return self

    @property
    def is_empty(self) -> bool:
        return self.exact is None and self.prefix is None and self.regex is None


class WorkloadSelector(IstioModel):
    match_labels: StrMap = {}


# --- VirtualService --------------------------------------------------------------------


_TOKEN = re2.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _check_header_name(name: str, *at: str | int) -> None:
    # Envoy NACKs the whole route table for these; say so at apply time instead.
    if name.startswith(":") or name.lower() == "host":
        raise invalid(
            f"header {name!r} cannot be modified (host and pseudo-headers; "
            "use rewrite.authority to change the host)",
            *at,
        )
    if not _TOKEN.fullmatch(name):
        raise invalid(f"{name!r} is not a valid HTTP header name", *at)


class HeaderOperations(IstioModel):
    set: StrMap = {}
    add: StrMap = {}
    remove: tuple[Str, ...] = ()

    @model_validator(mode="after")
    def _names(self) -> Self:
        for op in ("set", "add"):
            for name in getattr(self, op):
                _check_header_name(name, op, name)
        for i, name in enumerate(self.remove):
            _check_header_name(name, "remove", i)
        return self


class Headers(IstioModel):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class Delegate(IstioModel):
    name: NonEmptyStr
    namespace: Str | None = None


class HTTPMatchRequest(IstioModel):
    name: Str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[Str, StringMatch] = {}
    port: Port | None = None
    source_labels: StrMap = {}
    gateways: tuple[Str, ...] = ()
    query_params: dict[Str, StringMatch] = {}
    ignore_uri_case: Bool | None = None
    without_headers: dict[Str, StringMatch] = {}
    source_namespace: Str | None = None
    stat_prefix: Str | None = None

    @model_validator(mode="after")
    def _non_empty_matches(self) -> Self:
        # Only header and query matches may be empty ("present"); an empty uri match is a typo.
        for field in ("uri", "scheme", "method", "authority"):
            match = getattr(self, field)
            if match is not None and match.is_empty:
                raise invalid("must set one of exact, prefix, regex", field)
        return self


class HTTPRouteDestination(IstioModel):
    destination: Destination
    weight: Weight = 0
    headers: Headers | None = None


class RouteDestination(IstioModel):
    destination: Destination
    weight: Weight = 0


class HTTPRedirect(IstioModel):
    uri: Str | None = None
    authority: Str | None = None
    port: Port | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: Str | None = None
    redirect_code: RedirectCode | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "port", "derive_port")
        if not any((self.uri, self.authority, self.scheme, self.port, self.derive_port)):
            raise invalid("must set at least one of uri, authority, scheme, port, derivePort")
        return self


class HTTPBody(IstioModel):
    string: Str | None = None
    bytes: Str | None = None  # base64, as proto3 JSON encodes bytes

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "string", "bytes")
        if self.bytes is not None:
            try:
                base64.b64decode(self.bytes, validate=True)
            except binascii.Error:
                raise invalid("must be base64-encoded", "bytes") from None
        return self


class HTTPDirectResponse(IstioModel):
    status: HttpStatus
    body: HTTPBody | None = None


class RegexRewrite(IstioModel):
    match: Regex
    rewrite: Str = ""


class HTTPRewrite(IstioModel):
    uri: Str | None = None
    authority: Str | None = None
    uri_regex_rewrite: RegexRewrite | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "uri", "uri_regex_rewrite")
        return self


class HTTPRetry(IstioModel):
    attempts: Count = 0
    per_try_timeout: Duration | None = None
    retry_on: Str | None = None
    retry_remote_localities: Bool | None = None
    retry_ignore_previous_hosts: Bool | None = None
    backoff: PositiveDuration | None = None


class CorsPolicy(IstioModel):
    allow_origin: tuple[Str, ...] = ()  # deprecated by Istio in favour of allowOrigins
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[Str, ...] = ()
    allow_headers: tuple[Str, ...] = ()
    expose_headers: tuple[Str, ...] = ()
    max_age: Duration | None = None
    allow_credentials: Bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        for i, origin in enumerate(self.allow_origins):
            if origin.is_empty:
                raise invalid("must set one of exact, prefix, regex", "allowOrigins", i)
        return self


class Delay(IstioModel):
    fixed_delay: PositiveDuration | None = None
    exponential_delay: PositiveDuration | None = None
    percentage: Percent | None = None
    percent: WholePercent | None = None  # deprecated integer form of percentage

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "fixed_delay", "exponential_delay", required=True)
        return self


class Abort(IstioModel):
    http_status: HttpStatus | None = None
    grpc_status: Str | None = None
    http2_error: Str | None = None
    percentage: Percent | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "http_status", "grpc_status", "http2_error", required=True)
        return self


class HTTPFaultInjection(IstioModel):
    delay: Delay | None = None
    abort: Abort | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.delay is None and self.abort is None:
            raise invalid("must set delay, abort or both")
        return self


class HTTPMirrorPolicy(IstioModel):
    destination: Destination
    percentage: Percent | None = None


class HTTPRoute(IstioModel):
    name: Str | None = None
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()
    mirror_percent: WholePercent | None = None  # deprecated by Istio for mirrorPercentage
    mirror_percentage: Percent | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "route", "redirect", "direct_response", "delegate", required=True)
        _one_of(self, "mirror", "mirrors")
        if self.rewrite is not None and self.redirect is not None:
            raise invalid("cannot be combined with redirect", "rewrite")
        _weights(self.route, "route")
        return self


class L4MatchAttributes(IstioModel):
    destination_subnets: tuple[Str, ...] = ()
    port: Port | None = None
    source_subnet: Str | None = None
    source_labels: StrMap = {}
    gateways: tuple[Str, ...] = ()
    source_namespace: Str | None = None


class TLSMatchAttributes(IstioModel):
    sni_hosts: tuple[NonEmptyStr, ...] = Field(min_length=1)
    destination_subnets: tuple[Str, ...] = ()
    port: Port | None = None
    source_labels: StrMap = {}
    gateways: tuple[Str, ...] = ()
    source_namespace: Str | None = None


class TCPRoute(IstioModel):
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _weights(self.route, "route")
        return self


class TLSRoute(IstioModel):
    match: tuple[TLSMatchAttributes, ...] = Field(min_length=1)
    route: tuple[RouteDestination, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _weights(self.route, "route")
        return self


class VirtualServiceSpec(IstioModel):
    hosts: tuple[NonEmptyStr, ...] = ()
    gateways: tuple[Str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    export_to: tuple[Str, ...] = ()

    @property
    def is_delegate(self) -> bool:
        """Istio's rule: a VirtualService without hosts is a delegate, reached from a parent."""
        return not self.hosts

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.is_delegate:
            for field in ("gateways", "tls", "tcp"):
                if getattr(self, field):
                    raise invalid("must be empty in a delegate VirtualService (no hosts)", field)
            for i, route in enumerate(self.http):
                if route.delegate is not None:
                    raise invalid("a delegate VirtualService cannot delegate again", "http", i)
        return self


class VirtualService(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS
    KIND: ClassVar[str] = "VirtualService"

    spec: VirtualServiceSpec


# --- DestinationRule -------------------------------------------------------------------


class RingHash(IstioModel):
    minimum_ring_size: UInt64 | None = None


class MagLev(IstioModel):
    table_size: UInt64 | None = None


class Attribute(IstioModel):
    """An extra attribute of a generated hash cookie (HTTPCookie.Attribute)."""

    name: NonEmptyStr
    value: Str | None = None


class HTTPCookie(IstioModel):
    name: NonEmptyStr
    path: Str | None = None
    ttl: Duration | None = None  # 0s: a session cookie
    attributes: tuple[Attribute, ...] = ()


class ConsistentHashLB(IstioModel):
    http_header_name: Str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: Bool | None = None
    http_query_parameter_name: Str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: UInt64 | None = None  # deprecated by Istio for ringHash

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(
            self, "http_header_name", "http_cookie", "use_source_ip", "http_query_parameter_name"
        )
        _one_of(self, "ring_hash", "maglev", "minimum_ring_size")
        return self


class Distribute(IstioModel):
    from_: Str | None = Field(default=None, alias="from")
    to: dict[Str, UInt32] = {}


class Failover(IstioModel):
    from_: Str | None = Field(default=None, alias="from")
    to: Str | None = None


class LocalityLoadBalancerSetting(IstioModel):
    distribute: tuple[Distribute, ...] = ()
    failover: tuple[Failover, ...] = ()
    failover_priority: tuple[Str, ...] = ()
    enabled: Bool | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "distribute", "failover")
        return self


class WarmupConfiguration(IstioModel):
    duration: PositiveDuration
    minimum_percent: Percentage | None = None
    aggression: Annotated[float, Strict(), Ge(1)] | None = None


SimpleLB = Literal[
    "UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"
]


class LoadBalancerSettings(IstioModel):
    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    warmup_duration_secs: PositiveDuration | None = None
    warmup: WarmupConfiguration | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "simple", "consistent_hash")
        _one_of(self, "warmup_duration_secs", "warmup")
        return self


class TcpKeepalive(IstioModel):
    probes: UInt32 | None = None
    time: PositiveDuration | None = None
    interval: PositiveDuration | None = None


class TCPSettings(IstioModel):
    max_connections: Count | None = None
    connect_timeout: PositiveDuration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: PositiveDuration | None = None
    idle_timeout: Duration | None = None


class HTTPSettings(IstioModel):
    http1_max_pending_requests: Count | None = None
    http2_max_requests: Count | None = None
    max_requests_per_connection: Count | None = None
    max_retries: Count | None = None
    idle_timeout: PositiveDuration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: Bool | None = None
    max_concurrent_streams: Count | None = None


class ConnectionPoolSettings(IstioModel):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(IstioModel):
    split_external_local_origin_errors: Bool | None = None
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    consecutive_5xx_errors: UInt32 | None = Field(default=None, alias="consecutive5xxErrors")
    interval: PositiveDuration | None = None
    base_ejection_time: PositiveDuration | None = None
    max_ejection_percent: WholePercent | None = None
    min_health_percent: WholePercent | None = None
    consecutive_errors: Count | None = None  # deprecated by Istio for consecutive5xxErrors


class ClientTLSSettings(IstioModel):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] | None = None
    client_certificate: Str | None = None
    private_key: Str | None = None
    ca_certificates: Str | None = None
    credential_name: Str | None = None
    subject_alt_names: tuple[Str, ...] = ()
    sni: Str | None = None
    insecure_skip_verify: Bool | None = None
    ca_crl: Str | None = None


class PortTrafficPolicy(IstioModel):
    port: PortSelector
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TunnelSettings(IstioModel):
    protocol: Literal["CONNECT", "POST"] | None = None
    target_host: NonEmptyStr
    target_port: Port


class ProxyProtocol(IstioModel):
    version: Literal["V1", "V2"] | None = None


class RetryBudget(IstioModel):
    percent: Percentage | None = None
    min_retry_concurrency: UInt32 | None = None
    budget_interval: Duration | None = None


class TrafficPolicy(IstioModel):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: tuple[PortTrafficPolicy, ...] = ()
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        seen: set[int] = set()
        for i, policy in enumerate(self.port_level_settings):
            if policy.port.number in seen:
                raise invalid(
                    f"duplicate port {policy.port.number}", "portLevelSettings", i, "port", "number"
                )
            seen.add(policy.port.number)
        return self


class Subset(IstioModel):
    name: NonEmptyStr
    labels: StrMap = {}
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(IstioModel):
    host: NonEmptyStr
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[Str, ...] = ()
    workload_selector: WorkloadSelector | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        seen: set[str] = set()
        for i, subset in enumerate(self.subsets):
            if subset.name in seen:
                raise invalid(f"duplicate subset name {subset.name!r}", "subsets", i, "name")
            seen.add(subset.name)
        return self

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


class DestinationRule(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS
    KIND: ClassVar[str] = "DestinationRule"

    spec: DestinationRuleSpec


__all__ = [
    "NETWORKING_VERSIONS",
    "Abort",
    "Attribute",
    "ClientTLSSettings",
    "ConnectionPoolSettings",
    "ConsistentHashLB",
    "CorsPolicy",
    "Delay",
    "Delegate",
    "Destination",
    "DestinationRule",
    "DestinationRuleSpec",
    "Distribute",
    "Failover",
    "HTTPBody",
    "HTTPCookie",
    "HTTPDirectResponse",
    "HTTPFaultInjection",
    "HTTPMatchRequest",
    "HTTPMirrorPolicy",
    "HTTPRedirect",
    "HTTPRetry",
    "HTTPRewrite",
    "HTTPRoute",
    "HTTPRouteDestination",
    "HTTPSettings",
    "HeaderOperations",
    "Headers",
    "L4MatchAttributes",
    "LoadBalancerSettings",
    "LocalityLoadBalancerSetting",
    "MagLev",
    "OutlierDetection",
    "Percent",
    "PortSelector",
    "PortTrafficPolicy",
    "ProxyProtocol",
    "RegexRewrite",
    "RetryBudget",
    "RingHash",
    "RouteDestination",
    "StringMatch",
    "Subset",
    "TCPRoute",
    "TCPSettings",
    "TLSMatchAttributes",
    "TLSRoute",
    "TcpKeepalive",
    "TrafficPolicy",
    "TunnelSettings",
    "VirtualService",
    "VirtualServiceSpec",
    "WarmupConfiguration",
    "WorkloadSelector",
]

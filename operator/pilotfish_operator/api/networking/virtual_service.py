"""VirtualService (networking.istio.io): HTTP, TCP and TLS routes with Istio's validation."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, ClassVar, Literal, Self, get_args

from pydantic import AfterValidator, Field, Strict, model_validator

from ..errors import invalid
from ..meta import (
    Bool,
    Duration,
    IstioModel,
    IstioResource,
    Port,
    PositiveDuration,
    Str,
    StrMap,
)
from .common import (
    NETWORKING_VERSIONS,
    Count,
    Destination,
    Headers,
    HttpStatus,
    NonEmptyStr,
    Percent,
    RedirectCode,
    Regex,
    StringMatch,
    Subnet,
    Weight,
    WholePercent,
    _one_of,
)


def _weights(
    dests: tuple[HTTPRouteDestination, ...] | tuple[RouteDestination, ...], at: str
) -> None:
    # A lone destination gets everything whatever its weight; several must not all be 0,
    # otherwise nothing would receive traffic. Totals other than 100 are normalised.
    if len(dests) > 1 and all(d.weight == 0 for d in dests):
        raise invalid("weights must not all be zero when there are several destinations", at)


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
    prefix_rewrite: Str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "port", "derive_port")
        _one_of(self, "uri", "prefix_rewrite")
        wanted = (self.uri, self.authority, self.scheme, self.port, self.derive_port)
        if not any(wanted) and self.prefix_rewrite is None:
            raise invalid(
                "must set at least one of uri, prefixRewrite, authority, scheme, port, derivePort"
            )
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


# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on conditions, as Istio accepts them.
RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)


def _check_retry_on(value: str) -> str:
    for token in (t.strip() for t in value.split(",")):
        if token.isdigit():
            if not 100 <= int(token) <= 599:
                raise ValueError(f"{token} is not an HTTP status code")
        elif token not in RETRY_ON:
            known = ", ".join(sorted(RETRY_ON))
            raise ValueError(f"{token!r} is not a retry condition; use status codes or {known}")
    return value


class HTTPRetry(IstioModel):
    attempts: Count = 0
    per_try_timeout: PositiveDuration | None = None
    retry_on: Annotated[str, Strict(), AfterValidator(_check_retry_on)] | None = None
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


GrpcStatus = Literal[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
]
GRPC_STATUS: tuple[str, ...] = get_args(GrpcStatus)
"""gRPC status names in code order (the index is the code)."""


class Abort(IstioModel):
    http_status: HttpStatus | None = None
    grpc_status: GrpcStatus | None = None
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
    destination_subnets: tuple[Subnet, ...] = ()
    port: Port | None = None
    source_subnet: Str | None = None
    source_labels: StrMap = {}
    gateways: tuple[Str, ...] = ()
    source_namespace: Str | None = None


class TLSMatchAttributes(IstioModel):
    sni_hosts: tuple[NonEmptyStr, ...] = Field(min_length=1)
    destination_subnets: tuple[Subnet, ...] = ()
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
        for i, tls in enumerate(self.tls):
            for j, m in enumerate(tls.match):
                for k, sni in enumerate(m.sni_hosts):
                    if not any(_covers(h, sni) for h in self.hosts):
                        raise invalid(
                            f"SNI host {sni!r} is not one of the VirtualService's hosts",
                            "tls",
                            i,
                            "match",
                            j,
                            "sniHosts",
                            k,
                        )
        return self


def _covers(host: str, sni: str) -> bool:
    """Istio's check that a TLS route's SNI name is a host of the VirtualService: equal,
    or within a wildcard host (`*.example.com` covers `api.example.com`)."""
    if host == "*" or host == sni:
        return True
    if host.startswith("*."):
        return sni.endswith(host[1:]) or (sni.startswith("*.") and sni.endswith(host[1:]))
    return False


class VirtualService(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS
    KIND: ClassVar[str] = "VirtualService"

    spec: VirtualServiceSpec


# --- DestinationRule -------------------------------------------------------------------


__all__ = [
    "GRPC_STATUS",
    "Abort",
    "CorsPolicy",
    "Delay",
    "Delegate",
    "HTTPBody",
    "HTTPDirectResponse",
    "HTTPFaultInjection",
    "HTTPMatchRequest",
    "HTTPMirrorPolicy",
    "HTTPRedirect",
    "HTTPRetry",
    "HTTPRewrite",
    "HTTPRoute",
    "HTTPRouteDestination",
    "L4MatchAttributes",
    "RegexRewrite",
    "RouteDestination",
    "TCPRoute",
    "TLSMatchAttributes",
    "TLSRoute",
    "VirtualService",
    "VirtualServiceSpec",
]

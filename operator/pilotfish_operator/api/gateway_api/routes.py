"""HTTPRoute, GRPCRoute, TLSRoute and TCPRoute (gateway.networking.k8s.io): the
standard channel's matches, filters, weighted backends and timeouts."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, Strict, StringConstraints, model_validator

from ..errors import invalid
from ..meta import Duration, Str
from ..networking.common import _check_re2
from .common import (
    V1,
    BackendObjectReference,
    BackendWeight,
    GatewayApiModel,
    GatewayApiResource,
    Hostname,
    ParentReference,
    PortNumber,
    SectionName,
    gateway_api_versions,
)

HeaderName = Annotated[
    str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$", max_length=256)
]
Path = Annotated[str, Strict(), StringConstraints(pattern=r"^/", max_length=1024)]
StatusCode = Literal[301, 302, 303, 307, 308]


def _re2(pattern: str) -> None:
    # Envoy matches with RE2: the same check as Istio's regex fields.
    try:
        _check_re2(pattern)
    except ValueError as exc:
        raise invalid(str(exc), "value") from None


class HTTPPathMatch(GatewayApiModel):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Str = "/"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.type == "RegularExpression":
            _re2(self.value)
        elif not self.value.startswith("/"):
            raise invalid("must start with '/'", "value")
        elif "//" in self.value or "/./" in self.value or "/../" in self.value:
            raise invalid("must be a normalised path (no '//', '/./' or '/../')", "value")
        return self


class ValueMatch(GatewayApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, Strict(), StringConstraints(max_length=4096)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.type == "RegularExpression":
            _re2(self.value)
        return self


def _unique_names(matches: tuple[ValueMatch, ...], field: str, ignore_case: bool) -> None:
    seen: set[str] = set()
    for i, m in enumerate(matches):
        name = m.name.lower() if ignore_case else m.name
        if name in seen:
            raise invalid(f"{m.name!r} is matched twice", field, i, "name")
        seen.add(name)


class HTTPRouteMatch(GatewayApiModel):
    path: HTTPPathMatch | None = HTTPPathMatch()  # the API's default: PathPrefix /
    headers: tuple[ValueMatch, ...] = ()
    query_params: tuple[ValueMatch, ...] = ()
    method: (
        Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
        | None
    ) = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique_names(self.headers, "headers", ignore_case=True)
        _unique_names(self.query_params, "queryParams", ignore_case=False)
        return self


class HTTPHeader(GatewayApiModel):
    name: HeaderName
    value: Str


class HeaderModifier(GatewayApiModel):
    set: tuple[HTTPHeader, ...] = ()
    add: tuple[HTTPHeader, ...] = ()
    remove: tuple[HeaderName, ...] = ()


class HTTPPathModifier(GatewayApiModel):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: Path | None = None
    replace_prefix_match: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        wanted = "replaceFullPath" if self.type == "ReplaceFullPath" else "replacePrefixMatch"
        value = (
            self.replace_full_path if self.type == "ReplaceFullPath" else self.replace_prefix_match
        )
        if value is None:
            raise invalid(f"type {self.type} needs {wanted}", wanted)
        return self


class RequestRedirect(GatewayApiModel):
    scheme: Literal["http", "https"] | None = None
    hostname: Hostname | None = None
    path: HTTPPathModifier | None = None
    port: PortNumber | None = None
    status_code: StatusCode = 302


class URLRewrite(GatewayApiModel):
    hostname: Hostname | None = None
    path: HTTPPathModifier | None = None


class Fraction(GatewayApiModel):
    numerator: Annotated[int, Strict(), Field(ge=0)]
    denominator: Annotated[int, Strict(), Field(ge=1)] = 100


class RequestMirror(GatewayApiModel):
    backend_ref: BackendObjectReference
    percent: Annotated[int, Strict(), Field(ge=0, le=100)] | None = None
    fraction: Fraction | None = None


FilterType = Literal[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
    "RequestMirror",
    "ExtensionRef",
    "CORS",
]


class HTTPRouteFilter(GatewayApiModel):
    type: FilterType
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = Field(None, alias="urlRewrite")
    request_mirror: RequestMirror | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        field = self.type[0].lower() + self.type[1:] if self.type != "URLRewrite" else "urlRewrite"
        if self.type in ("ExtensionRef", "CORS"):
            return self  # not implemented: reported in the route's status
        attr = {
            "RequestHeaderModifier": self.request_header_modifier,
            "ResponseHeaderModifier": self.response_header_modifier,
            "RequestRedirect": self.request_redirect,
            "URLRewrite": self.url_rewrite,
            "RequestMirror": self.request_mirror,
        }[self.type]
        if attr is None:
            raise invalid(f"type {self.type} needs {field}", field)
        return self


def _check_filters(filters: tuple[HTTPRouteFilter, ...]) -> None:
    types = [f.type for f in filters]
    for i, t in enumerate(types):
        if t not in ("RequestMirror", "ExtensionRef") and t in types[:i]:
            raise invalid(f"filter {t} appears more than once", "filters", i)
    if "RequestRedirect" in types and "URLRewrite" in types:
        raise invalid("RequestRedirect and URLRewrite cannot be combined", "filters")


class HTTPBackendRef(BackendObjectReference):
    weight: BackendWeight = 1
    filters: tuple[HTTPRouteFilter, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_filters(self.filters)
        return self


class HTTPRouteTimeouts(GatewayApiModel):
    request: Duration | None = None
    backend_request: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (
            self.request is not None
            and self.backend_request is not None
            and self.request.total_seconds() > 0
            and self.backend_request > self.request
        ):
            raise invalid("backendRequest must not be longer than request", "backendRequest")
        return self


class HTTPRouteRule(GatewayApiModel):
    name: SectionName | None = None
    matches: tuple[HTTPRouteMatch, ...] = (HTTPRouteMatch(path=HTTPPathMatch()),)
    filters: tuple[HTTPRouteFilter, ...] = ()
    backend_refs: tuple[HTTPBackendRef, ...] = ()
    timeouts: HTTPRouteTimeouts | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_filters(self.filters)
        for f in self.filters:
            path = (f.url_rewrite or f.request_redirect or URLRewrite()).path
            prefix = path is not None and path.type == "ReplacePrefixMatch"
            if prefix and any(
                m.path is not None and m.path.type != "PathPrefix" for m in self.matches
            ):
                raise invalid(
                    "ReplacePrefixMatch needs every match to be a PathPrefix match", "filters"
                )
        return self


class CommonRouteSpec(GatewayApiModel):
    parent_refs: tuple[ParentReference, ...] = ()


class HTTPRouteSpec(CommonRouteSpec):
    hostnames: tuple[Hostname, ...] = ()
    rules: tuple[HTTPRouteRule, ...] = (HTTPRouteRule(),)


class KubernetesHTTPRoute(GatewayApiResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = V1
    KIND: ClassVar[str] = "HTTPRoute"
    spec: HTTPRouteSpec


class GRPCMethodMatch(GatewayApiModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: Str | None = None
    method: Str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.service is None and self.method is None:
            raise invalid("one of service, method is required", "service")
        return self


class GRPCRouteMatch(GatewayApiModel):
    method: GRPCMethodMatch | None = None
    headers: tuple[ValueMatch, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique_names(self.headers, "headers", ignore_case=True)
        return self


class GRPCRouteFilter(HTTPRouteFilter):
    @model_validator(mode="after")
    def _grpc(self) -> Self:
        if self.type in ("RequestRedirect", "URLRewrite"):
            raise invalid(f"{self.type} is not a GRPCRoute filter", "type")
        return self


class GRPCBackendRef(BackendObjectReference):
    weight: BackendWeight = 1
    filters: tuple[GRPCRouteFilter, ...] = ()


class GRPCRouteRule(GatewayApiModel):
    name: SectionName | None = None
    matches: tuple[GRPCRouteMatch, ...] = ()
    filters: tuple[GRPCRouteFilter, ...] = ()
    backend_refs: tuple[GRPCBackendRef, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_filters(self.filters)
        return self


class GRPCRouteSpec(CommonRouteSpec):
    hostnames: tuple[Hostname, ...] = ()
    rules: tuple[GRPCRouteRule, ...] = (GRPCRouteRule(),)


class GRPCRoute(GatewayApiResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = gateway_api_versions("v1")
    KIND: ClassVar[str] = "GRPCRoute"
    spec: GRPCRouteSpec


class L4BackendRef(BackendObjectReference):
    weight: BackendWeight = 1


class L4RouteRule(GatewayApiModel):
    name: SectionName | None = None
    backend_refs: tuple[L4BackendRef, ...]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.backend_refs:
            raise invalid("at least one backendRef is required", "backendRefs")
        return self


class TLSRouteSpec(CommonRouteSpec):
    hostnames: tuple[Hostname, ...] = ()
    rules: tuple[L4RouteRule, ...]


class TLSRoute(GatewayApiResource):
    """TLS passthrough by SNI (experimental channel in the Gateway API)."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = gateway_api_versions("v1alpha2")
    KIND: ClassVar[str] = "TLSRoute"
    spec: TLSRouteSpec


class TCPRouteSpec(CommonRouteSpec):
    rules: tuple[L4RouteRule, ...]


class TCPRoute(GatewayApiResource):
    """Connections on a TCP listener (experimental channel in the Gateway API)."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = gateway_api_versions("v1alpha2")
    KIND: ClassVar[str] = "TCPRoute"
    spec: TCPRouteSpec


AnyRoute = KubernetesHTTPRoute | GRPCRoute | TLSRoute | TCPRoute

__all__ = [
    "AnyRoute",
    "GRPCBackendRef",
    "GRPCMethodMatch",
    "GRPCRoute",
    "GRPCRouteFilter",
    "GRPCRouteMatch",
    "GRPCRouteRule",
    "GRPCRouteSpec",
    "HTTPBackendRef",
    "HTTPHeader",
    "HTTPPathMatch",
    "HTTPPathModifier",
    "HTTPRouteFilter",
    "HTTPRouteMatch",
    "HTTPRouteRule",
    "HTTPRouteSpec",
    "HTTPRouteTimeouts",
    "HeaderModifier",
    "KubernetesHTTPRoute",
    "L4BackendRef",
    "L4RouteRule",
    "RequestMirror",
    "RequestRedirect",
    "TCPRoute",
    "TCPRouteSpec",
    "TLSRoute",
    "TLSRouteSpec",
    "URLRewrite",
    "ValueMatch",
]

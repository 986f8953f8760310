"""Mesh-wide settings: Istio's MeshConfig, in the ConfigMap `pilotfish-mesh` of
`pilotfish-system` under the key `mesh` (as Istio keeps it in ConfigMap `istio`).

The same object in both modes: `kubectl apply` it in a cluster (the chart renders it
from `meshConfig`), or put it in local mode's config directory. Read today:
`extensionProviders` with `envoyExtAuthzHttp` and `envoyExtAuthzGrpc` (the providers
of CUSTOM AuthorizationPolicies); other provider kinds and other MeshConfig fields are
accepted and ignored until a feature reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from ..injection import CONTROL_PLANE_NAMESPACE
from .errors import ConfigError, Problem, invalid, problems_from
from .meta import Bool, Duration, IstioModel, Port, Str, StrMap
from .networking.common import NonEmptyStr

CONFIGMAP = "pilotfish-mesh"
KEY = "mesh"
STORE_KEY = ("ConfigMap", CONTROL_PLANE_NAMESPACE, CONFIGMAP)


class RequestBody(IstioModel):
    max_request_bytes: Annotated[int, Field(ge=0)] = 0
    allow_partial_message: Bool = False
    pack_as_bytes: Bool = False


def _status(value: str | None) -> str | None:
    if value is not None and not (value.isdigit() and 200 <= int(value) <= 599):
        raise ValueError("must be an HTTP status code")
    return value


class ExtAuthzHttp(IstioModel):
    service: NonEmptyStr
    port: Port
    timeout: Duration | None = None
    path_prefix: Str | None = None
    fail_open: Bool = False
    status_on_error: Str | None = None
    include_request_headers_in_check: tuple[Str, ...] = ()
    include_additional_headers_in_check: StrMap = Field(default_factory=dict)
    include_request_body_in_check: RequestBody | None = None
    headers_to_upstream_on_allow: tuple[Str, ...] = ()
    headers_to_downstream_on_deny: tuple[Str, ...] = ()
    headers_to_downstream_on_allow: tuple[Str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        _status(self.status_on_error)
        if self.path_prefix and not self.path_prefix.startswith("/"):
            raise invalid("must start with /", "pathPrefix")
        return self


class ExtAuthzGrpc(IstioModel):
    service: NonEmptyStr
    port: Port
    timeout: Duration | None = None
    fail_open: Bool = False
    status_on_error: Str | None = None
    include_request_body_in_check: RequestBody | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _status(self.status_on_error)
        return self


class Header(IstioModel):
    name: NonEmptyStr
    value: Str = ""
    env_name: Str = ""


class Zipkin(IstioModel):
    service: NonEmptyStr
    port: Port
    max_tag_length: Annotated[int, Field(ge=0)] = 0
    enable_64bit_trace_id: Bool = Field(False, alias="enable64bitTraceId")
    trace_context_option: Literal["USE_B3", "USE_B3_WITH_W3C_PROPAGATION"] = "USE_B3"
    timeout: Duration | None = None
    headers: tuple[Header, ...] = ()
    path: Str = ""


class OtelHttp(IstioModel):
    path: Str = ""
    timeout: Duration | None = None
    headers: tuple[Header, ...] = ()


class OtelGrpc(IstioModel):
    timeout: Duration | None = None
    initial_metadata: tuple[Header, ...] = ()


class OpenTelemetry(IstioModel):
    model_config = ConfigDict(extra="allow")  # resourceDetectors, samplers: not read

    service: NonEmptyStr
    port: Port
    max_tag_length: Annotated[int, Field(ge=0)] = 0
    http: OtelHttp | None = None
    grpc: OtelGrpc | None = None


class LogFormat(IstioModel):
    text: Str = ""
    labels: dict[Str, Any] = Field(default_factory=dict)


class FileAccessLog(IstioModel):
    path: Str = "/dev/stdout"
    log_format: LogFormat | None = None


class OtelAccessLog(IstioModel):
    service: NonEmptyStr
    port: Port
    log_name: Str = ""
    log_format: LogFormat | None = None


class ExtensionProvider(IstioModel):
    # Other provider kinds (Stackdriver, Datadog...) pass through unread.
    model_config = ConfigDict(extra="allow")

    name: NonEmptyStr
    envoy_ext_authz_http: ExtAuthzHttp | None = None
    envoy_ext_authz_grpc: ExtAuthzGrpc | None = None
    zipkin: Zipkin | None = None
    opentelemetry: OpenTelemetry | None = None
    envoy_file_access_log: FileAccessLog | None = None
    envoy_otel_als: OtelAccessLog | None = None
    prometheus: dict[Str, Any] | None = None


class DefaultProviders(IstioModel):
    tracing: tuple[Str, ...] = ()
    metrics: tuple[Str, ...] = ()
    access_logging: tuple[Str, ...] = ()


class ProxyTracing(IstioModel):
    model_config = ConfigDict(extra="allow")  # per-tracer settings: not read

    sampling: Annotated[float, Field(ge=0, le=100)] | None = None


class ProxyConfig(IstioModel):
    model_config = ConfigDict(extra="allow")  # the rest of Istio's ProxyConfig: not read

    tracing: ProxyTracing | None = None


class OutboundTrafficPolicy(IstioModel):
    mode: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"


class MeshConfigSpec(IstioModel):
    model_config = ConfigDict(extra="allow")

    outbound_traffic_policy: OutboundTrafficPolicy = OutboundTrafficPolicy()
    """Where a sidecar sends what the mesh does not know: through (ALLOW_ANY, Istio's
    default) or nowhere (REGISTRY_ONLY: 502 for HTTP, TCP closed)."""

    extension_providers: tuple[ExtensionProvider, ...] = ()
    default_providers: DefaultProviders = DefaultProviders()
    """Providers used where no Telemetry names any (metrics: `prometheus` when empty)."""
    default_config: ProxyConfig = ProxyConfig()
    """`tracing.sampling`: the percent of requests traced where Telemetry sets none
    (Istio's default: 1)."""
    access_log_file: Str = ""
    """Istio's mesh-wide access log: a path (`/dev/stdout` for the proxy's output);
    empty: none."""
    access_log_encoding: Literal["TEXT", "JSON"] = "TEXT"
    access_log_format: Str = ""
    """TEXT: an Envoy format string; JSON: a JSON object of field -> command operator.
    Empty: Istio's default of the encoding."""

    @model_validator(mode="after")
    def _unique(self) -> Self:
        seen: set[str] = set()
        for i, p in enumerate(self.extension_providers):
            if p.name in seen:
                raise invalid(f"provider name {p.name!r} is used twice", "extensionProviders", i)
            seen.add(p.name)
        if self.access_log_encoding == "JSON" and self.access_log_format:
            try:
                fields = json.loads(self.access_log_format)
            except ValueError:
                fields = None
            if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
                raise invalid("with JSON encoding, a JSON object of strings", "accessLogFormat")
        return self

    def provider(self, name: str) -> ExtensionProvider | None:
        return next((p for p in self.extension_providers if p.name == name), None)


_ADAPTER = TypeAdapter(MeshConfigSpec)
EMPTY = MeshConfigSpec()


def parse_mesh(namespace: str, name: str, data: Mapping[str, Any]) -> MeshConfigSpec:
    """The MeshConfig in a ConfigMap's data; ConfigError names the field under
    `data.mesh` and why."""
    text = data.get(KEY)
    if text is None:
        return EMPTY
    try:
        raw = yaml.safe_load(text) if isinstance(text, str) else text
    except yaml.YAMLError as exc:
        raise ConfigError(
            "ConfigMap", namespace, name, [Problem(f"data.{KEY}", f"not YAML: {exc}")]
        ) from None
    try:
        return _ADAPTER.validate_python(raw or {})
    except ValidationError as exc:
        raise ConfigError("ConfigMap", namespace, name, problems_from(exc, ("data", KEY))) from None


def of(store: Any) -> MeshConfigSpec:
    """The mesh config the Store holds (validated when it was applied), or the default."""
    found = store.get(STORE_KEY)
    data = getattr(found, "data", None)
    return parse_mesh(STORE_KEY[1], STORE_KEY[2], data) if data is not None else EMPTY

"""Telemetry (telemetry.istio.io): what a workload's sidecar reports, as metrics
(overrides, disabling), traces (provider, sampling, custom tags) and access logs
(providers, filter), at mesh (root namespace), namespace and workload level.

Providers are named here and defined in the mesh config's `extensionProviders`
(`prometheus` and `envoy` are built in); translate/telemetry.py resolves the levels.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import model_validator

from .errors import invalid
from .meta import Bool, Duration, IstioModel, IstioResource, Percentage, Str
from .networking.common import NonEmptyStr, WorkloadSelector
from .security.authorization_policy import PolicyTargetReference

Mode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]
Metric = Literal[
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
]


class ProviderRef(IstioModel):
    name: NonEmptyStr


class ModeSelector(IstioModel):
    mode: Mode = "CLIENT_AND_SERVER"


class LiteralTag(IstioModel):
    value: Str = ""


class EnvironmentTag(IstioModel):
    name: NonEmptyStr
    default_value: Str = ""


class HeaderTag(IstioModel):
    name: NonEmptyStr
    default_value: Str = ""


class FormatterTag(IstioModel):
    value: NonEmptyStr


class CustomTag(IstioModel):
    literal: LiteralTag | None = None
    environment: EnvironmentTag | None = None
    header: HeaderTag | None = None
    formatter: FormatterTag | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        kinds = (self.literal, self.environment, self.header, self.formatter)
        if sum(x is not None for x in kinds) != 1:
            raise invalid("exactly one of literal, environment, header, formatter")
        return self


class Tracing(IstioModel):
    match: ModeSelector | None = None
    providers: tuple[ProviderRef, ...] = ()
    random_sampling_percentage: Percentage | None = None
    disable_span_reporting: Bool | None = None
    custom_tags: dict[Str, CustomTag] = {}
    use_request_id_for_trace_sampling: Bool | None = None
    enable_istio_tags: Bool | None = None
    disable_context_propagation: Bool | None = None


class MetricSelector(IstioModel):
    metric: Metric | None = None
    custom_metric: NonEmptyStr | None = None
    mode: Mode = "CLIENT_AND_SERVER"

    @model_validator(mode="after")
    def _one(self) -> Self:
        if self.metric is not None and self.custom_metric is not None:
            raise invalid("only one of metric and customMetric")
        return self


class TagOverride(IstioModel):
    operation: Literal["UPSERT", "REMOVE"] = "UPSERT"
    value: Str = ""

    @model_validator(mode="after")
    def _value(self) -> Self:
        if self.operation == "UPSERT" and not self.value:
            raise invalid("value must be set when operation is UPSERT", "value")
        if self.operation == "REMOVE" and self.value:
            raise invalid("value must not be set when operation is REMOVE", "value")
        return self


class MetricsOverride(IstioModel):
    match: MetricSelector | None = None
    disabled: Bool | None = None
    tag_overrides: dict[Str, TagOverride] = {}


class Metrics(IstioModel):
    providers: tuple[ProviderRef, ...] = ()
    overrides: tuple[MetricsOverride, ...] = ()
    reporting_interval: Duration | None = None


class LogFilter(IstioModel):
    expression: Str = ""


class AccessLogging(IstioModel):
    match: ModeSelector | None = None
    providers: tuple[ProviderRef, ...] = ()
    disabled: Bool | None = None
    filter: LogFilter | None = None


class TelemetrySpec(IstioModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    tracing: tuple[Tracing, ...] = ()
    metrics: tuple[Metrics, ...] = ()
    access_logging: tuple[AccessLogging, ...] = ()

    @model_validator(mode="after")
    def _bound_once(self) -> Self:
        targets = self.target_ref is not None or bool(self.target_refs)
        if targets and self.selector is not None:
            raise invalid("only one of selector, targetRef, targetRefs", "selector")
        if self.target_ref is not None and self.target_refs:
            raise invalid("only one of targetRef and targetRefs", "targetRefs")
        return self


class Telemetry(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = (
        "telemetry.istio.io/v1",
        "telemetry.istio.io/v1alpha1",
    )
    KIND: ClassVar[str] = "Telemetry"

    spec: TelemetrySpec = TelemetrySpec()

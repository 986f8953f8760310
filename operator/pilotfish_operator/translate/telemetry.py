"""Istio's Telemetry API resolved for a workload: the mesh-wide object (root namespace,
no selector), then the namespace's (no selector), then the workload's (selector), each
level overriding what it sets; the mesh config's `defaultProviders` and
`defaultConfig.tracing.sampling` underneath. Of several objects at one level, the
oldest counts (as Istio) and the others are reported.

Per side: CLIENT is what the sidecar sends (its outbound listeners), SERVER what it
receives (its inbound ones). What each field does on Envoy: xds translate/observe.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pilotfish_xds import ir

from ..api import Service
from ..api.mesh_config import ExtensionProvider, LogFormat, MeshConfigSpec
from ..api.telemetry import MetricSelector, ModeSelector, Telemetry, TelemetrySpec
from . import providers
from .precedence import age

Side = Literal["CLIENT", "SERVER"]
DEFAULT_SAMPLING = 1.0
"""Percent of requests traced when neither Telemetry nor the mesh config says (Istio's)."""
BUILTIN_LOG = "envoy"
"""Istio's built-in access log provider: the proxy's stdout (or the mesh config's
`accessLogFile`), in the mesh config's encoding and format."""
BUILTIN_METRICS = "prometheus"
UNREAD_METRICS = ("GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES")
"""Istio's metrics no sidecar of ours emits: overrides of them change nothing."""


def _applies(match: ModeSelector | MetricSelector | None, side: Side) -> bool:
    mode = match.mode if match is not None else "CLIENT_AND_SERVER"
    return mode in ("CLIENT_AND_SERVER", side)


@dataclass
class TelemetryPolicies:
    objects: Iterable[Telemetry]
    root: str
    mesh: MeshConfigSpec
    services: Mapping[tuple[str, str], Service]
    cluster_domain: str
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._mesh: Telemetry | None = None
        self._namespace: dict[str, Telemetry] = {}
        self._workload: dict[str, list[Telemetry]] = {}
        for t in sorted(self.objects, key=age):
            where = f"Telemetry {t.namespace}/{t.name}"
            if t.spec.target_ref is not None or t.spec.target_refs:
                continue  # for gateways and waypoints
            selector = t.spec.selector.match_labels if t.spec.selector is not None else {}
            if selector:
                self._workload.setdefault(t.namespace, []).append(t)
            elif t.namespace == self.root:
                if self._mesh is not None:
                    self._warn(f"{where}: ignored, {self._mesh.name} is older and mesh-wide too")
                else:
                    self._mesh = t
            elif t.namespace in self._namespace:
                older = self._namespace[t.namespace].name
                self._warn(f"{where}: ignored, {older} is older and namespace-wide too")
            else:
                self._namespace[t.namespace] = t
        self._memo: dict[tuple[object, ...], ir.Telemetry] = {}

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def for_workload(self, namespace: str, labels: Mapping[str, str], name: str) -> ir.Telemetry:
        """`name`: what the workload's traces are reported as (`<app>.<namespace>`)."""
        levels = [t for t in (self._mesh, self._namespace.get(namespace)) if t is not None]
        matching = [
            t
            for t in self._workload.get(namespace, ())
            if t.spec.selector is not None
            and all(labels.get(k) == v for k, v in t.spec.selector.match_labels.items())
        ]
        if len(matching) > 1:
            names = ", ".join(t.name for t in matching[1:])
            self._warn(
                f"Telemetry {namespace}/{names}: ignored for workloads matching "
                f"{matching[0].name} too (the oldest applies)"
            )
        levels += matching[:1]
        key = (tuple(id(t) for t in levels), name)
        found = self._memo.get(key)
        if found is None:
            specs = [t.spec for t in levels]
            where = [f"Telemetry {t.namespace}/{t.name}" for t in levels]
            found = ir.Telemetry(
                self._side(specs, where, "CLIENT", name), self._side(specs, where, "SERVER", name)
            )
            self._memo[key] = found
        return found

    # ------------------------------------------------------------------ per side

    def _side(
        self, specs: list[TelemetrySpec], where: list[str], side: Side, name: str
    ) -> ir.SideTelemetry:
        return ir.SideTelemetry(
            *self._metrics(specs, side),
            tracing=self._tracing(specs, where, side, name),
            access_logs=self._access_logs(specs, where, side),
        )

    def _metrics(
        self, specs: list[TelemetrySpec], side: Side
    ) -> tuple[bool, tuple[ir.MetricOverride, ...]]:
        names = self.mesh.default_providers.metrics or (BUILTIN_METRICS,)
        overrides: list[ir.MetricOverride] = []
        for spec in specs:
            for m in spec.metrics:
                if m.providers:
                    names = tuple(p.name for p in m.providers)
                for o in m.overrides:
                    if o.match is not None and o.match.custom_metric is not None:
                        continue  # custom metrics are not ours to emit
                    if not _applies(o.match, side):
                        continue
                    metric = (o.match.metric if o.match else None) or "ALL_METRICS"
                    if metric in UNREAD_METRICS:
                        continue
                    tags = tuple(
                        (tag, t.value if t.operation == "UPSERT" else None)
                        for tag, t in sorted(o.tag_overrides.items())
                    )
                    overrides.append(ir.MetricOverride(metric, o.disabled, tags))
        on = any(self._is_prometheus(n) for n in names)
        return on, tuple(overrides) if on else ()

    def _is_prometheus(self, name: str) -> bool:
        p = self.mesh.provider(name)
        return name == BUILTIN_METRICS if p is None else p.prometheus is not None

    def _tracing(
        self, specs: list[TelemetrySpec], where: list[str], side: Side, name: str
    ) -> ir.Tracing | None:
        names = self.mesh.default_providers.tracing
        sampling: float | None = None
        report = propagate = True
        tags: dict[str, ir.CustomTag] = {}
        origin = "the mesh config's defaultProviders.tracing"
        for spec, at in zip(specs, where, strict=True):
            for i, t in enumerate(spec.tracing):
                if not _applies(t.match, side):
                    continue
                if t.providers:
                    names = tuple(p.name for p in t.providers)
                    origin = f"{at}: spec.tracing[{i}].providers"
                if t.random_sampling_percentage is not None:
                    sampling = t.random_sampling_percentage
                if t.disable_span_reporting is not None:
                    report = not t.disable_span_reporting
                if t.disable_context_propagation is not None:
                    propagate = not t.disable_context_propagation
                for tag, c in t.custom_tags.items():
                    if c.literal is not None:
                        tags[tag] = ir.CustomTag(tag, "literal", c.literal.value)
                    elif c.environment is not None:
                        env = c.environment
                        tags[tag] = ir.CustomTag(tag, "environment", env.name, env.default_value)
                    elif c.header is not None:
                        h = c.header
                        tags[tag] = ir.CustomTag(tag, "header", h.name, h.default_value)
                    elif c.formatter is not None:
                        tags[tag] = ir.CustomTag(tag, "formatter", c.formatter.value)
        if not names:
            return None
        provider = self._tracer(names[0], name, origin)
        if provider is None:
            return None
        if sampling is None:
            default = self.mesh.default_config.tracing
            sampling = default.sampling if default and default.sampling is not None else None
        return ir.Tracing(
            provider if report else None,
            DEFAULT_SAMPLING if sampling is None else sampling,
            tuple(tags[k] for k in sorted(tags)),
            propagate,
        )

    def _tracer(self, provider: str, service_name: str, origin: str) -> ir.TracingProvider | None:
        p = self.mesh.provider(provider)
        config = (p.zipkin or p.opentelemetry) if p is not None else None
        if p is None or config is None:
            self._warn(
                f"{origin}: tracing provider {provider!r} is not a zipkin or opentelemetry "
                "provider of the mesh config's extensionProviders; no traces"
            )
            return None
        target = self._collector(p, config.service, config.port, origin)
        if target is None:
            return None
        max_tag = config.max_tag_length or 256
        if p.zipkin is not None:
            return ir.TracingProvider(
                "zipkin",
                target,
                path=p.zipkin.path,
                max_tag_length=max_tag,
                w3c=p.zipkin.trace_context_option == "USE_B3_WITH_W3C_PROPAGATION",
                timeout=p.zipkin.timeout,
            )
        assert p.opentelemetry is not None
        http, grpc = p.opentelemetry.http, p.opentelemetry.grpc
        return ir.TracingProvider(
            "opentelemetry",
            target,
            path=(http.path or "/v1/traces") if http is not None else "",
            max_tag_length=max_tag,
            service_name=service_name,
            headers=tuple((h.name, h.value) for h in http.headers) if http is not None else (),
            timeout=http.timeout if http is not None else grpc.timeout if grpc else None,
        )

    def _collector(
        self, p: ExtensionProvider, service: str, port: int, origin: str
    ) -> ir.Collector | None:
        found = providers.collector(p.name, service, port, self.services, self.cluster_domain)
        if isinstance(found, str):
            self._warn(f"{origin}: {found}; nothing is sent to it")
            return None
        return found

    def _access_logs(
        self, specs: list[TelemetrySpec], where: list[str], side: Side
    ) -> tuple[ir.AccessLog, ...]:
        names = self.mesh.default_providers.access_logging
        if not names and self.mesh.access_log_file:
            names = (BUILTIN_LOG,)  # Istio's accessLogFile, without Telemetry
        disabled = False
        expression = ""
        origin = "the mesh config's defaultProviders.accessLogging"
        for spec, at in zip(specs, where, strict=True):
            for i, a in enumerate(spec.access_logging):
                if not _applies(a.match, side):
                    continue
                if a.providers:
                    names = tuple(p.name for p in a.providers)
                    origin = f"{at}: spec.accessLogging[{i}].providers"
                if a.disabled is not None:
                    disabled = a.disabled
                if a.filter is not None:
                    expression = a.filter.expression
        if disabled:
            return ()
        out = []
        for n in names:
            log = self._log(n, origin)
            if log is not None:
                out.append(dataclasses.replace(log, filter=expression))
        return tuple(dict.fromkeys(out))

    def _log(self, name: str, origin: str) -> ir.AccessLog | None:
        mesh = self.mesh
        p = mesh.provider(name)
        if p is None and name == BUILTIN_LOG:
            path = mesh.access_log_file or "/dev/stdout"
            return ir.AccessLog(path, mesh.access_log_encoding, mesh.access_log_format)
        if p is not None and p.envoy_file_access_log is not None:
            f = p.envoy_file_access_log
            return ir.AccessLog(f.path, *_format(f.log_format))
        if p is not None and p.envoy_otel_als is not None:
            o = p.envoy_otel_als
            target = self._collector(p, o.service, o.port, origin)
            if target is None:
                return None
            text = o.log_format.text if o.log_format is not None else ""
            labels = o.log_format.labels if o.log_format is not None else {}
            return ir.AccessLog(
                format=text,
                otel=target,
                log_name=o.log_name or "otel_envoy_accesslog",
                labels=tuple((k, str(v)) for k, v in sorted(labels.items())),
            )
        self._warn(
            f"{origin}: access log provider {name!r} is not envoy, envoyFileAccessLog or "
            "envoyOtelAls of the mesh config's extensionProviders; not logged there"
        )
        return None


def _format(log_format: LogFormat | None) -> tuple[Literal["TEXT", "JSON"], str]:
    if log_format is not None and log_format.labels:
        return "JSON", json.dumps({k: str(v) for k, v in log_format.labels.items()})
    return "TEXT", log_format.text if log_format is not None else ""

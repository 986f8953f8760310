"""DestinationRule (networking.istio.io): subsets and traffic policies with Istio's validation."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from annotated_types import Ge, Le
from pydantic import Field, Strict, model_validator

from ..errors import invalid
from ..meta import (
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
from .common import (
    NETWORKING_VERSIONS,
    Count,
    DnsLabel,
    NonEmptyStr,
    PortSelector,
    WholePercent,
    WorkloadSelector,
    _one_of,
)


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


class ZoneAwareFailover(IstioModel):
    from_: Str | None = Field(default=None, alias="from")
    to: Str | None = None


class ZoneAwareLoadBalancerSetting(IstioModel):
    """Accepted, not applied yet (docs: README, "Istio API coverage")."""

    enabled: Bool | None = None
    failover: tuple[ZoneAwareFailover, ...] = ()
    failover_priority: tuple[Str, ...] = ()
    min_cluster_size: Annotated[int, Strict(), Ge(1), Le(2**64 - 1)] | None = None


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
    zone_aware_lb_setting: ZoneAwareLoadBalancerSetting | None = None
    warmup_duration_secs: PositiveDuration | None = None
    warmup: WarmupConfiguration | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _one_of(self, "simple", "consistent_hash")
        _one_of(self, "locality_lb_setting", "zone_aware_lb_setting")
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


class ConnectionKeepalive(IstioModel):
    """HTTP/2 PINGs on upstream HTTP/2 connections (Envoy needs both; Istio documents
    both as required when http2KeepAlive is set)."""

    interval: PositiveDuration
    timeout: PositiveDuration


class HTTPSettings(IstioModel):
    http1_max_pending_requests: Count | None = None
    http2_max_requests: Count | None = None
    max_requests_per_connection: Count | None = None
    max_retries: Count | None = None
    idle_timeout: PositiveDuration | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: Bool | None = None
    max_concurrent_streams: Count | None = None
    http2_keep_alive: ConnectionKeepalive | None = None


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
    # Which statuses count as errors; accepted, not applied yet (README).
    outlier_detection_http_error_codes: tuple[Annotated[int, Strict(), Ge(100), Le(599)], ...] = ()


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
    name: DnsLabel
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
    "Attribute",
    "ClientTLSSettings",
    "ConnectionKeepalive",
    "ConnectionPoolSettings",
    "ConsistentHashLB",
    "DestinationRule",
    "DestinationRuleSpec",
    "Distribute",
    "Failover",
    "HTTPCookie",
    "HTTPSettings",
    "LoadBalancerSettings",
    "LocalityLoadBalancerSetting",
    "MagLev",
    "OutlierDetection",
    "PortTrafficPolicy",
    "ProxyProtocol",
    "RetryBudget",
    "RingHash",
    "Subset",
    "TCPSettings",
    "TcpKeepalive",
    "TrafficPolicy",
    "TunnelSettings",
    "WarmupConfiguration",
    "ZoneAwareFailover",
    "ZoneAwareLoadBalancerSetting",
]

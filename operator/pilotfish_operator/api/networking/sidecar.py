"""Sidecar (networking.istio.io): what one workload's sidecar imports (egress hosts), the
ports it accepts (ingress listeners) and its outboundTrafficPolicy, with Istio's
validation (the webhook's checks; each problem at its field path)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal, Self

from annotated_types import Ge, Le
from pydantic import Strict, model_validator

from ..errors import invalid
from ..meta import IstioModel, IstioResource, Str, StrMap
from .common import NETWORKING_VERSIONS, Destination
from .destination_rule import ConnectionPoolSettings
from .gateway import ServerTLSSettings, _dns_label
from .service_entry import PROTOCOLS

CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]
PortNumber = Annotated[int, Strict(), Ge(0), Le(2**32 - 1)]
UNIX = "unix://"


def _check_port(number: int) -> str | None:
    return None if 1 <= number <= 65535 else f"port number {number} must be in the range 1..65535"


def _check_unix(path: str) -> str | None:
    """Istio's rule for a unix socket path: absolute (not a directory) or abstract (`@`)."""
    if not path:
        return "unix address must not be empty"
    if path.startswith("@"):
        return None
    if not path.startswith("/") or path.endswith("/"):
        return f"{path} is not an absolute path to a file"
    return None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def check_egress_host(host: str) -> str | None:
    """Why an egress host (`namespace/dnsName`) is invalid, as Istio checks it: the
    namespace is `*`, `.`, `~` or a namespace name; the name is `*`, or a fully
    qualified name with at most a leading `*.` wildcard."""
    namespace, slash, name = host.partition("/")
    if not slash:
        return "host must be of form namespace/dnsName"
    if not namespace or not name:
        return "config namespace and dnsName in host entry cannot be empty"
    if namespace not in ("*", ".", "~") and not _dns_label(namespace):
        return f"invalid namespace value {namespace!r} in sidecar"
    if name == "*":
        return None
    if "." not in name:
        return "short names (non FQDN) are not allowed"
    if "*" in name.removeprefix("*."):
        return f"partial wildcard {name!r} not allowed"
    labels = name.removeprefix("*.").split(".")
    if len(name) > 255 or not all(_dns_label(label, upper=True) for label in labels):
        return f"{name!r} is not a valid domain name"
    return None


class SidecarPort(IstioModel):
    number: PortNumber = 0
    protocol: Str = ""
    name: Str = ""
    target_port: PortNumber | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.name and not _dns_label(self.name):
            raise invalid(f"{self.name!r} is not a valid port name", "name")
        if self.protocol and self.protocol.lower() not in PROTOCOLS:
            raise invalid(f"unsupported protocol {self.protocol!r}", "protocol")
        if self.target_port:
            raise invalid("targetPort has no impact on Sidecars", "targetPort")
        return self


class SidecarSelector(IstioModel):
    """The Sidecar's workloadSelector (`labels`, Istio's v1alpha3 selector)."""

    labels: StrMap = {}

    @model_validator(mode="after")
    def _check(self) -> Self:
        for key, value in self.labels.items():
            if not key:
                raise invalid("empty key is not supported in selector", "labels")
            if "*" in key or "*" in value:
                raise invalid("wildcard is not supported in selector", "labels", key)
        return self


class IstioIngressListener(IstioModel):
    port: SidecarPort
    bind: Str = ""
    capture_mode: CaptureMode = "DEFAULT"
    default_endpoint: Str = ""
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        why = _check_port(self.port.number)
        if why:
            raise invalid(why, "port", "number")
        if self.bind and not _is_ip(self.bind):
            raise invalid(f"{self.bind} is not a valid IP", "bind")
        if self.default_endpoint:
            why = _check_endpoint(self.default_endpoint)
            if why:
                raise invalid(why, "defaultEndpoint")
        tls = self.tls
        if tls is not None:
            if tls.subject_alt_names:
                raise invalid("subjectAltNames is not supported in ingress tls", "tls")
            if tls.https_redirect:
                raise invalid("httpsRedirect is not supported", "tls")
            if tls.credential_name:
                raise invalid("credentialName is not currently supported", "tls")
            if tls.mode in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
                raise invalid(f"cannot set mode to {tls.mode} in sidecar ingress tls", "tls")
        return self

    @property
    def endpoint(self) -> tuple[str, int] | str | None:
        """(host, port) of a TCP defaultEndpoint, the path of a unix one, or None."""
        if not self.default_endpoint:
            return None
        if self.default_endpoint.startswith(UNIX):
            return self.default_endpoint
        host, _, port = self.default_endpoint.rpartition(":")
        return host.strip("[]"), int(port)


def _check_endpoint(value: str) -> str | None:
    """`127.0.0.1:<port>`, `0.0.0.0:<port>`, `[::1]:<port>`, `[::]:<port>`, `:<port>` or
    `unix://<path>`, as Istio allows."""
    if value.startswith(UNIX):
        return _check_unix(value.removeprefix(UNIX))
    host, colon, port = value.rpartition(":")
    if not colon or (host.count(":") and not (host.startswith("[") and host.endswith("]"))):
        return f"address {value}: missing port in address"
    if host.strip("[]") not in ("", "127.0.0.1", "0.0.0.0", "::1", "::"):
        return (
            "defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,"
            "[::]:port,unix://filepath or unset"
        )
    if not port.isdigit():
        return f"defaultEndpoint port ({port}) is not a number"
    return _check_port(int(port))


class IstioEgressListener(IstioModel):
    port: SidecarPort | None = None
    bind: Str = ""
    capture_mode: CaptureMode = "DEFAULT"
    hosts: tuple[Str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        port = self.port
        if port is not None and port.number == 0:
            if not self.bind.startswith(UNIX):
                raise invalid(
                    "ports with 0 value must have a unix domain socket bind address", "bind"
                )
            why = _check_unix(self.bind.removeprefix(UNIX))
            if why:
                raise invalid(why, "bind")
            if self.capture_mode not in ("DEFAULT", "NONE"):
                raise invalid(
                    "captureMode must be DEFAULT/NONE for unix domain socket listeners",
                    "captureMode",
                )
        elif port is not None:
            why = _check_port(port.number)
            if why:
                raise invalid(why, "port", "number")
            if self.bind and not _is_ip(self.bind):
                raise invalid(f"{self.bind} is not a valid IP", "bind")
        if not self.hosts:
            raise invalid("egress listener must contain at least one host", "hosts")
        for i, host in enumerate(self.hosts):
            why = check_egress_host(host)
            if why:
                raise invalid(why, "hosts", i)
        return self


class OutboundTrafficPolicy(IstioModel):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] = "REGISTRY_ONLY"
    """Istio's enum default (0) is REGISTRY_ONLY: a policy given without a mode means it."""
    egress_proxy: Destination | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        proxy = self.egress_proxy
        if proxy is None:
            return self
        if self.mode != "ALLOW_ANY":
            raise invalid("egressProxy must be set only with ALLOW_ANY mode", "egressProxy")
        if proxy.port is None:
            raise invalid("egressProxy port must be set", "egressProxy", "port")
        return self


class SidecarSpec(IstioModel):
    workload_selector: SidecarSelector | None = None
    ingress: tuple[IstioIngressListener, ...] = ()
    egress: tuple[IstioEgressListener, ...] = ()
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not (
            self.ingress
            or self.egress
            or self.outbound_traffic_policy
            or self.inbound_connection_pool
        ):
            raise invalid("empty configuration provided")
        seen: set[int] = set()
        for i, listener in enumerate(self.ingress):
            if listener.port.number in seen:
                raise invalid("ports on IP bound listeners must be unique", "ingress", i, "port")
            seen.add(listener.port.number)
        seen, sockets = set(), set()
        for i, egress in enumerate(self.egress):
            if egress.port is None:
                if i != len(self.egress) - 1:
                    raise invalid(
                        "the egress listener with empty port should be the last listener",
                        "egress",
                        i,
                        "port",
                    )
            elif egress.port.number == 0:
                if egress.bind in sockets:
                    raise invalid(
                        "unix domain socket values for listeners must be unique", "egress", i
                    )
                sockets.add(egress.bind)
            else:
                if egress.port.number in seen:
                    raise invalid("ports on IP bound listeners must be unique", "egress", i, "port")
                seen.add(egress.port.number)
        return self


class Sidecar(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS
    KIND: ClassVar[str] = "Sidecar"

    spec: SidecarSpec


__all__ = [
    "IstioEgressListener",
    "IstioIngressListener",
    "OutboundTrafficPolicy",
    "Sidecar",
    "SidecarPort",
    "SidecarSelector",
    "SidecarSpec",
    "check_egress_host",
]

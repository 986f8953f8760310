"""ServiceEntry (networking.istio.io): hosts the mesh does not discover itself (external
services, VMs), with Istio's validation (its CRD rules and the webhook's checks that
keep a bad entry away from Envoy)."""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar, Literal, Self

from pydantic import model_validator

from ..errors import invalid
from ..meta import IstioModel, IstioResource, Port, Str, StrMap
from .common import NETWORKING_VERSIONS, NonEmptyStr
from .workload_entry import WorkloadEntrySpec

Location = Literal["MESH_EXTERNAL", "MESH_INTERNAL"]
Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]

PROTOCOLS = frozenset(
    {"http", "https", "http2", "grpc", "grpc-web", "tcp", "tls", "mongo", "mysql", "redis", "udp"}
)
"""Istio's protocol names (case-insensitive) for a ServiceEntry port."""

_HOST = re.compile(r"^\*?[A-Za-z0-9_.-]*$")
_FQDN_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_fqdn(value: str) -> bool:
    """A DNS name (what a DNS cluster can resolve): labels, no wildcard."""
    labels = value.rstrip(".").split(".")
    return 0 < len(value) <= 255 and all(_FQDN_LABEL.match(label) for label in labels)


class ServiceEntryPort(IstioModel):
    """Istio's ServicePort."""

    number: Port
    protocol: Str | None = None
    name: Str = ""
    target_port: Port | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.protocol is not None and self.protocol.lower() not in PROTOCOLS:
            raise invalid(
                f"unsupported protocol {self.protocol!r}; one of "
                f"{', '.join(sorted(p.upper() for p in PROTOCOLS))}",
                "protocol",
            )
        return self


class EntrySelector(IstioModel):
    """A ServiceEntry's workloadSelector: pods and WorkloadEntries of its namespace."""

    labels: StrMap = {}

    @model_validator(mode="after")
    def _check(self) -> Self:
        for key, value in self.labels.items():
            if "*" in value:
                raise invalid("wildcard is not supported in selector", "labels", key)
        return self


class ServiceEntrySpec(IstioModel):
    hosts: tuple[NonEmptyStr, ...]
    addresses: tuple[Str, ...] = ()
    ports: tuple[ServiceEntryPort, ...] = ()
    location: Location | None = None
    resolution: Resolution | None = None
    endpoints: tuple[WorkloadEntrySpec, ...] = ()
    workload_selector: EntrySelector | None = None
    export_to: tuple[Str, ...] = ()
    subject_alt_names: tuple[Str, ...] = ()

    @property
    def mode(self) -> Resolution:
        return self.resolution or "NONE"

    @property
    def internal(self) -> bool:
        return self.location == "MESH_INTERNAL"

    @model_validator(mode="after")
    def _check(self) -> Self:
        mode = self.mode
        if not self.hosts:
            raise invalid("at least one host is required", "hosts")
        for i, host in enumerate(self.hosts):
            if host == "*":
                raise invalid("hostname cannot be wildcard", "hosts", i)
            if mode == "DYNAMIC_DNS" and not host.startswith("*."):
                raise invalid("DYNAMIC_DNS is only supported for wildcard hosts", "hosts", i)
            if not _HOST.match(host):
                raise invalid(f"{host!r} is not a valid host name", "hosts", i)
            if mode in ("DNS", "DNS_ROUND_ROBIN") and not self.endpoints and not is_fqdn(host):
                raise invalid(
                    f"hosts must be FQDN if no endpoints are provided for resolution mode {mode}",
                    "hosts",
                    i,
                )
        for i, address in enumerate(self.addresses):
            try:
                net = ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise invalid(
                    f"{address!r} is not an IP address or CIDR block", "addresses", i
                ) from None
            if "/" in address and net.num_addresses > 1 and mode not in ("NONE", "STATIC"):
                raise invalid(
                    "CIDR addresses are allowed only for NONE/STATIC resolution types",
                    "addresses",
                    i,
                )
        names: set[str] = set()
        numbers: set[int] = set()
        for i, port in enumerate(self.ports):
            if port.name and port.name in names:
                raise invalid(f"port name {port.name!r} is used twice", "ports", i, "name")
            if port.number in numbers:
                raise invalid("port number cannot be duplicated", "ports", i, "number")
            names.add(port.name)
            numbers.add(port.number)
        if self.workload_selector is not None and self.endpoints:
            raise invalid("only one of WorkloadSelector or Endpoints can be set", "endpoints")
        if mode == "NONE" and self.endpoints:
            raise invalid("NONE mode cannot set endpoints", "endpoints")
        if mode == "DNS_ROUND_ROBIN" and len(self.endpoints) > 1:
            raise invalid("DNS_ROUND_ROBIN mode cannot have multiple endpoints", "endpoints")
        for i, ep in enumerate(self.endpoints):
            address = ep.address
            static = mode == "STATIC" and address and not address.startswith("unix://")
            if static and not is_ip(address):
                raise invalid(
                    f"endpoint address {address!r} is not an IP address (resolution STATIC)",
                    "endpoints",
                    i,
                    "address",
                )
            if mode in ("DNS", "DNS_ROUND_ROBIN") and not (is_ip(address) or is_fqdn(address)):
                raise invalid(
                    f"endpoint address {address!r} is not a valid FQDN or an IP address",
                    "endpoints",
                    i,
                    "address",
                )
            for name in ep.ports:
                if name not in names:
                    raise invalid(
                        f"endpoint port {name!r} is not defined by the service entry",
                        "endpoints",
                        i,
                        "ports",
                        name,
                    )
        return self


class ServiceEntry(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS
    KIND: ClassVar[str] = "ServiceEntry"

    spec: ServiceEntrySpec


__all__ = [
    "EntrySelector",
    "ServiceEntry",
    "ServiceEntryPort",
    "ServiceEntrySpec",
]

"""WorkloadEntry (networking.istio.io): a workload outside Kubernetes (a VM), and the
endpoint message a ServiceEntry's `endpoints` share with it."""

from __future__ import annotations

import re
from typing import ClassVar, Self

from pydantic import model_validator

from ..errors import invalid
from ..meta import IstioModel, IstioResource, Port, Str, StrMap, UInt32
from .common import NETWORKING_VERSIONS

# Istio's CRD schema: a port name is a DNS-label-like word.
_PORT_NAME = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")


class WorkloadEntrySpec(IstioModel):
    address: Str = ""
    """An IP, a host name (resolved with DNS resolution) or `unix://` socket path."""
    ports: dict[Str, Port] = {}
    """Service port name → the port this workload serves it on."""
    labels: StrMap = {}
    network: Str | None = None
    locality: Str | None = None
    weight: UInt32 | None = None
    service_account: Str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.address and not self.network:
            raise invalid("address is required (unless network is set)", "address")
        for name in self.ports:
            if not _PORT_NAME.match(name):
                raise invalid(f"{name!r} is not a valid port name", "ports", name)
        if self.address.startswith("unix://"):
            path = self.address.removeprefix("unix://")
            if self.ports:
                raise invalid("a UDS address may not include ports", "ports")
            if not path.startswith(("/", "@")):
                raise invalid("UDS must be an absolute path or abstract socket", "address")
            if path.endswith("/"):
                raise invalid("UDS may not be a dir", "address")
        return self


class WorkloadEntry(IstioResource):
    API_VERSIONS: ClassVar[tuple[str, ...]] = NETWORKING_VERSIONS
    KIND: ClassVar[str] = "WorkloadEntry"

    spec: WorkloadEntrySpec


__all__ = ["WorkloadEntry", "WorkloadEntrySpec"]

"""The rules of every HTTP/gRPC route on one listener and hostname (or, GAMMA, for one
Service as seen from one namespace) in one VirtualService, ordered by the API's
precedence across routes (as Istio merges them). Routes arrive oldest first, and the
sort is stable: ties keep route age, then namespace/name, then rule order.

GAMMA: a route in the Service's own namespace (a producer route) applies to every
client; a route in another namespace (a consumer route) only to clients of its own
namespace, before the producer's (`exportTo` its namespace; listed first, as
`virtual_services.by_host` takes the first exported one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...api import VirtualService
from ...api.gateway_api.routes import AnyRoute
from ..gateways import SYNTHETIC, meet
from .rules import Keyed, ordered


@dataclass
class _Merged:
    first: AnyRoute
    namespace: str
    name: str
    spec: dict[str, Any]
    entries: Keyed = field(default_factory=list)

    def virtual_service(self) -> VirtualService:
        return VirtualService.model_validate(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "creationTimestamp": self.first.metadata.creation_timestamp,
                },
                "spec": {**self.spec, "http": ordered(self.entries)},
            }
        )


@dataclass
class Merger:
    gateways: dict[tuple[str, str], _Merged] = field(default_factory=dict)
    mesh: dict[tuple[str, str], _Merged] = field(default_factory=dict)

    def at_gateway(
        self, route: AnyRoute, entries: Keyed, bound: list[tuple[str, str]], hostnames: list[str]
    ) -> None:
        """`bound`: (made-up Gateway `ns/name`, its listener's hostname) the route
        attaches to."""
        keys = {
            (gateway, host)
            for gateway, listener_host in bound
            for hostname in hostnames
            if (host := meet(listener_host, hostname)) is not None
        }
        for gateway, host in sorted(keys):
            ns, _, name = gateway.partition("/")
            merged = self.gateways.get((gateway, host))
            if merged is None:
                spec = {"hosts": [host], "gateways": [gateway]}
                merged = _Merged(route, ns, f"{name}{SYNTHETIC}{host}", spec)
                self.gateways[(gateway, host)] = merged
            merged.entries.extend(entries)

    def for_service(self, route: AnyRoute, entries: Keyed, host: str, namespace: str) -> None:
        """A GAMMA route's rules for the Service `host` of `namespace`."""
        merged = self.mesh.get((route.namespace, host))
        if merged is None:
            spec: dict[str, Any] = {"hosts": [host]}
            if route.namespace != namespace:
                spec["exportTo"] = ["."]  # a consumer route: its own namespace's clients
            name = f"{route.name}{SYNTHETIC}mesh{SYNTHETIC}{host}"  # after the oldest route
            merged = _Merged(route, route.namespace, name, spec)
            self.mesh[(route.namespace, host)] = merged
        merged.entries.extend(entries)

    def virtual_services(self) -> tuple[list[VirtualService], list[VirtualService]]:
        """(bound to the made-up Gateways, GAMMA: consumer routes first)."""
        gateways = [m.virtual_service() for m in self.gateways.values()]
        mesh = sorted(self.mesh.values(), key=lambda m: "exportTo" not in m.spec)
        return gateways, [m.virtual_service() for m in mesh]

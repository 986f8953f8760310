"""What a sidecar would get: an in-process ADS client subscribes like Envoy, acks every
push and keeps the latest of each type, decoded."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from adsclient import SotwClient

from pilotfish_xds.codec import decode
from pilotfish_xds.translate.listeners import port_route_name
from pilotfish_xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE


@dataclass
class ProxyConfig:
    clusters: set[str] = field(default_factory=set)
    endpoints: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)
    """cluster -> (address, port, health status name)"""
    listeners: set[str] = field(default_factory=set)
    routes: dict[str, Any] = field(default_factory=dict)
    """route configuration name -> its dict form"""
    received: set[str] = field(default_factory=set)
    """Type URLs answered at least once."""

    def weights(self, route: str, domain: str) -> dict[str, int]:
        """cluster -> weight of the first route of the virtual host serving `domain`."""
        for vh in self.routes[route].get("virtualHosts", []):
            if domain in vh.get("domains", []):
                action = vh["routes"][0]["route"]
                if "weightedClusters" in action:
                    return {
                        c["name"]: int(c["weight"]) for c in action["weightedClusters"]["clusters"]
                    }
                return {action["cluster"]: 100}
        raise AssertionError(f"no virtual host for {domain} in {route}")


class Proxy:
    """Subscribes to clusters and listeners (wildcard), to `eds` and to the route of `port`."""

    def __init__(self, address: str, node: str, eds: list[str], port: int = 9080) -> None:
        self.client = SotwClient(address, node)
        self.eds = eds
        self.route = port_route_name(port)
        self.config = ProxyConfig()
        self.history: list[tuple[str, int]] = []
        """(type URL, number of resources) of every response, in order."""

    async def __aenter__(self) -> Self:
        await self.client.connect()
        await self.client.request(CLUSTER)
        await self.client.request(ENDPOINT, self.eds)
        await self.client.request(LISTENER)
        await self.client.request(ROUTE, [self.route])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def _receive(self, wait: float) -> bool:
        try:
            response = await self.client.recv(wait)
        except TimeoutError:
            return False
        names = {
            CLUSTER: [],
            LISTENER: [],
            ENDPOINT: self.eds,
            ROUTE: [self.route],
        }[response.type_url]
        await self.client.ack(response, names)
        self.history.append((response.type_url, len(response.resources)))
        self._record(response)
        return True

    def _record(self, response: Any) -> None:
        c = self.config
        c.received.add(response.type_url)
        messages = [decode(r.type_url, r.value) for r in response.resources]
        if response.type_url == CLUSTER:
            c.clusters = {m.name for m in messages}
        elif response.type_url == LISTENER:
            c.listeners = {m.name for m in messages}
        elif response.type_url == ENDPOINT:
            c.endpoints = {
                m.cluster_name: [
                    (
                        lb.endpoint.address.socket_address.address,
                        lb.endpoint.address.socket_address.port_value,
                        lb.health_status.name,
                    )
                    for locality in m.endpoints
                    for lb in locality.lb_endpoints
                ]
                for m in messages
            }
        else:
            c.routes = {m.name: m.to_dict() for m in messages}

    async def until(
        self, check: Callable[[ProxyConfig], Any], within: float = 15.0, what: str = ""
    ) -> ProxyConfig:
        """Take pushes until every type has arrived and `check` holds."""
        deadline = time.monotonic() + within
        while True:
            complete = self.config.received >= {CLUSTER, ENDPOINT, LISTENER, ROUTE}
            if complete and check(self.config):
                return self.config
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"proxy config never got {what or check}: {self.config}")
            await self._receive(min(left, 0.5))

    async def quiet(self, within: float = 0.3) -> ProxyConfig:
        """Take pushes until none comes for `within` seconds."""
        while await self._receive(within):
            pass
        return self.config

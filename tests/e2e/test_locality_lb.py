"""Locality load balancing through real Envoy, from the client's own node: with pods in
two zones the client's zone gets all traffic until its endpoints fail, then the other
zone does; `distribute` splits by locality within statistical bounds."""

from __future__ import annotations

import math
from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


def node(name: str, zone: str) -> dict[str, Any]:
    labels = {"topology.kubernetes.io/region": "eu", "topology.kubernetes.io/zone": zone}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def on(obj: dict[str, Any], node_name: str) -> dict[str, Any]:
    obj["spec"]["nodeName"] = node_name
    return obj


async def test_nearest_zone_first_then_failover_and_distribute(harness: Harness) -> None:
    client, a, b = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("web-a", a, 8080)
    harness.backend("web-b", b, 8080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        node("node-a", "eu-a"),
        node("node-b", "eu-b"),
        service("web", "shop", {"app": "web"}, (8080,)),
        on(pod("client", "shop", client, {"app": "client"}), "node-a"),
        on(pod("web-a", "shop", a, {"app": "web"}, (8080,), inject=False), "node-a"),
        on(pod("web-b", "shop", b, {"app": "web"}, (8080,), inject=False), "node-b"),
    )
    await harness.start()
    url = "http://web:8080/"
    # No DestinationRule: plain round robin across zones.
    assert set(await harness.split(client, url, 20)) == {"web-a", "web-b"}

    outlier = {
        "consecutive5xxErrors": 2,
        "interval": "200ms",
        "baseEjectionTime": "30s",
        "maxEjectionPercent": 100,
    }
    dr = {"host": "web", "trafficPolicy": {"outlierDetection": outlier}}
    await harness.apply("dr.yaml", istio("DestinationRule", "web", "shop", dr))
    assert await harness.split(client, url, 40) == {"web-a": 40}  # the client's zone

    await harness.behave(f"{a}:8080", status=500)  # the near zone fails
    seen = await harness.split(client, url, 40)
    assert seen.get("web-b", 0) >= 37, seen  # ejected after two 500s: the far zone serves

    lb = {
        "localityLbSetting": {
            "distribute": [{"from": "eu/eu-a/*", "to": {"eu/eu-a/*": 20, "eu/eu-b/*": 80}}]
        }
    }
    dr = {"host": "web", "trafficPolicy": {"loadBalancer": lb}}
    await harness.behave(f"{a}:8080")  # recovered
    await harness.apply("dr.yaml", istio("DestinationRule", "web", "shop", dr))
    n = 400
    counts = await harness.split(client, url, n)
    assert counts.get("web-a", 0) + counts.get("web-b", 0) == n, counts
    assert abs(counts["web-b"] - 0.8 * n) < 5 * math.sqrt(n * 0.8 * 0.2), counts


async def test_failover_priority_by_label(harness: Harness) -> None:
    """failoverPriority on a workload label: endpoints sharing the client's `tier` first."""
    client, gold, silver = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("web-gold", gold, 8080)
    harness.backend("web-silver", silver, 8080)
    outlier = {
        "consecutive5xxErrors": 2,
        "interval": "200ms",
        "baseEjectionTime": "30s",
        "maxEjectionPercent": 100,  # Envoy ejects none of two hosts at its default 10 %
    }
    lb = {"localityLbSetting": {"failoverPriority": ["tier"]}}
    dr = {"host": "web", "trafficPolicy": {"outlierDetection": outlier, "loadBalancer": lb}}
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, (8080,)),
        pod("client", "shop", client, {"app": "client", "tier": "gold"}),
        pod("web-gold", "shop", gold, {"app": "web", "tier": "gold"}, (8080,), inject=False),
        pod("web-silver", "shop", silver, {"app": "web", "tier": "silver"}, (8080,), inject=False),
        istio("DestinationRule", "web", "shop", dr),
    )
    await harness.start()
    url = "http://web:8080/"
    assert await harness.split(client, url, 40) == {"web-gold": 40}
    await harness.behave(f"{gold}:8080", status=500)
    seen = await harness.split(client, url, 40)
    assert seen.get("web-silver", 0) >= 37, seen

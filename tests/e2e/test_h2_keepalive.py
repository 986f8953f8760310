"""DestinationRule `connectionPool.http.http2KeepAlive` through real Envoy (local mode):
the sidecar's Envoy accepts the cluster with HTTP/2 PING settings (its config_dump shows
them) and requests keep being served."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

CLUSTER = "outbound|9080||reviews.shop.svc.cluster.local"


def _keepalive(ip: str) -> Any:
    """The cluster's http2 connectionKeepalive in the sidecar's Envoy, or None."""
    with urllib.request.urlopen(f"http://{ip}:15000/config_dump", timeout=10) as r:
        dump = json.loads(r.read())
    for config in dump["configs"]:
        for c in config.get("dynamic_active_clusters", ()):
            if c["cluster"]["name"] == CLUSTER:
                options = c["cluster"].get("typed_extension_protocol_options", {})
                for typed in options.values():
                    h2 = typed.get("use_downstream_protocol_config", {})
                    return h2.get("http2_protocol_options", {}).get("connection_keepalive")
    return None


async def test_http2_keepalive_reaches_envoy(harness: Harness) -> None:
    client, reviews = harness.ip(10), harness.ip(20)
    harness.backend("reviews", reviews, 9080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        pod("reviews", "shop", reviews, {"app": "reviews"}, (9080,)),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
    )
    await harness.start()
    # A scoped sidecar (the default) holds the cluster once its workload called it.
    r = await harness.get(client, "http://reviews.shop:9080/")
    assert (r.status, r.served_by) == (200, "reviews")
    assert await asyncio.to_thread(_keepalive, client) is None

    http: dict[str, Any] = {
        "useClientProtocol": True,
        "http2KeepAlive": {"interval": "15s", "timeout": "2s"},
    }
    dr = istio(
        "DestinationRule",
        "reviews",
        "shop",
        {"host": "reviews", "trafficPolicy": {"connectionPool": {"http": http}}},
    )
    await harness.apply("dr.yaml", dr)
    assert await asyncio.to_thread(_keepalive, client) == {"interval": "15s", "timeout": "2s"}
    r = await harness.get(client, "http://reviews.shop:9080/")
    assert (r.status, r.served_by) == (200, "reviews")

"""Gateway API routes through real Envoy in local mode: precedence across the HTTPRoutes
of one listener and hostname (not their creation order), and a GRPCRoute routing by
gRPC service and method and splitting by weight."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Harness, namespace, pod
from test_gateway_api import GROUP, backends, gateway_api

pytestmark = pytest.mark.envoy


def created(obj: dict[str, Any], when: str) -> dict[str, Any]:
    obj["metadata"]["creationTimestamp"] = when
    return obj


def prefix(value: str, backend: str, **match: Any) -> dict[str, Any]:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": value}, **match}],
        "backendRefs": [{"name": backend, "port": 8080}],
    }


async def test_precedence_across_routes_beats_creation_order(harness: Harness) -> None:
    gw = harness.ip(140)
    labels = {f"{GROUP}/gateway-name": "web", "pilotfish.io/proxy": "gateway"}
    listener = {"name": "http", "port": 8080, "protocol": "HTTP"}
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        *backends(harness),
        pod("web-gateway", "shop", gw, labels),
        gateway_api(
            "Gateway", "web", "shop", {"gatewayClassName": "pilotfish", "listeners": [listener]}
        ),
        # The older route's /api would take /api/v2/... and canary requests if routes
        # kept creation order; the API puts the longer prefix and the header match first.
        created(
            gateway_api(
                "HTTPRoute",
                "old",
                "shop",
                {
                    "parentRefs": [{"name": "web"}],
                    "hostnames": ["shop.example.com"],
                    "rules": [prefix("/api", "foo-svc"), prefix("/same", "foo-svc")],
                },
            ),
            "2026-01-01T00:00:00Z",
        ),
        created(
            gateway_api(
                "HTTPRoute",
                "new",
                "shop",
                {
                    "parentRefs": [{"name": "web"}],
                    "hostnames": ["shop.example.com"],
                    "rules": [
                        prefix("/api/v2", "bar-svc"),
                        prefix(
                            "/api", "bar-svc-canary", headers=[{"name": "env", "value": "canary"}]
                        ),
                        prefix("/same", "bar-svc"),
                    ],
                },
            ),
            "2026-01-02T00:00:00Z",
        ),
    )
    await harness.start()
    host = {"host": "shop.example.com"}

    async def served(path: str, **headers: str) -> str | None:
        r = await harness.direct(f"{gw}:8080", path, {**host, **headers})
        assert r.status == 200, (path, r.status)
        return r.served_by

    assert await served("/api/v2/orders") == "bar-svc"
    assert await served("/api/v2") == "bar-svc"
    assert await served("/api/orders") == "foo-svc"
    assert await served("/api/orders", env="canary") == "bar-svc-canary"
    # A tie (the same match in both): the older route wins.
    assert await served("/same/x") == "foo-svc"

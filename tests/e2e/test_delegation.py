"""Delegate VirtualServices through real Envoy: the root hands /api to a delegate owned
by another namespace; its routes apply within /api only, and an edit of the delegate
alone changes the routing."""

from __future__ import annotations

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


def delegate(v2_prefix: str) -> dict[str, object]:
    return {
        "http": [
            {
                "match": [{"uri": {"prefix": v2_prefix}}],
                "route": [{"destination": {"host": "api-v2"}}],
            },
            {"route": [{"destination": {"host": "api-v1"}}]},
        ]
    }


async def test_root_delegates_a_path_to_another_teams_routes(harness: Harness) -> None:
    client = harness.ip(10)
    backends = {"web-1": harness.ip(11), "api-v1-1": harness.ip(12), "api-v2-1": harness.ip(13)}
    for name, ip in backends.items():
        harness.backend(name, ip, 8080)
    root = {
        "hosts": ["web"],
        "http": [
            {
                "match": [{"uri": {"prefix": "/api"}}],
                "delegate": {"name": "api-routes", "namespace": "team"},
            },
            {"route": [{"destination": {"host": "web"}}]},
        ],
    }
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("team", injected=False),
        service("web", "shop", {"app": "web"}, (8080,)),
        service("api-v1", "team", {"app": "api-v1"}, (8080,)),
        service("api-v2", "team", {"app": "api-v2"}, (8080,)),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-1", "shop", backends["web-1"], {"app": "web"}, (8080,), inject=False),
        pod("api-v1-1", "team", backends["api-v1-1"], {"app": "api-v1"}, (8080,)),
        pod("api-v2-1", "team", backends["api-v2-1"], {"app": "api-v2"}, (8080,)),
        istio("VirtualService", "web", "shop", root),
        istio("VirtualService", "api-routes", "team", delegate("/api/v2")),
    )
    await harness.start()

    async def who(path: str) -> str | None:
        return (await harness.get(client, f"http://web:8080{path}")).served_by

    assert await who("/api/v2/items") == "api-v2-1"
    assert await who("/api/v1/items") == "api-v1-1"  # the delegate's catch-all, within /api
    assert await who("/shop") == "web-1"  # outside /api: the root's own route

    # The team edits its delegate only: the root's host follows.
    await harness.apply(
        "mesh-delegate.yaml", istio("VirtualService", "api-routes", "team", delegate("/api/v3"))
    )
    assert await who("/api/v2/items") == "api-v1-1"
    assert await who("/api/v3/items") == "api-v2-1"

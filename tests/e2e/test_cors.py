"""CORS through real Envoy: the sidecar answers a preflight from an allowed origin and
adds the CORS headers to actual responses; a preflight from another origin goes on to
the app, or (unmatchedPreflights IGNORE) is answered without CORS headers."""

from __future__ import annotations

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

PREFLIGHT = {"access-control-request-method": "POST"}


async def test_preflight_and_actual_requests(harness: Harness) -> None:
    client = harness.ip(10)
    harness.backend("api-1", harness.ip(11), 8080)
    vs = {
        "hosts": ["api"],
        "http": [
            {
                "match": [{"uri": {"prefix": "/strict"}}],
                "corsPolicy": {
                    "allowOrigins": [{"exact": "https://shop.example.com"}],
                    "unmatchedPreflights": "IGNORE",
                },
                "route": [{"destination": {"host": "api"}}],
            },
            {
                "corsPolicy": {
                    "allowOrigins": [
                        {"exact": "https://shop.example.com"},
                        {"regex": "https://.*[.]partner[.]example"},
                    ],
                    "allowMethods": ["GET", "POST"],
                    "allowHeaders": ["x-token"],
                    "exposeHeaders": ["x-served-by"],
                    "maxAge": "1h",
                    "allowCredentials": True,
                },
                "route": [{"destination": {"host": "api"}}],
            },
        ],
    }
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("api", "shop", {"app": "api"}, (8080,)),
        pod("client", "shop", client, {"app": "client"}),
        pod("api-1", "shop", harness.ip(11), {"app": "api"}, (8080,), inject=False),
        istio("VirtualService", "api", "shop", vs),
    )
    await harness.start()
    url = "http://api:8080/items"

    for origin in ("https://shop.example.com", "https://eu.partner.example"):
        r = await harness.get(client, url, {"origin": origin, **PREFLIGHT}, method="OPTIONS")
        assert r.status == 200 and r.served_by is None  # answered by the sidecar
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-methods"] == "GET,POST"
        assert r.headers["access-control-allow-headers"] == "x-token"
        assert r.headers["access-control-max-age"] == "3600"
        assert r.headers["access-control-allow-credentials"] == "true"

        r = await harness.get(client, url, {"origin": origin})
        assert r.status == 200 and r.served_by == "api-1"
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-expose-headers"] == "x-served-by"

    other = {"origin": "https://evil.example.com"}
    r = await harness.get(client, url, {**other, **PREFLIGHT}, method="OPTIONS")
    assert r.served_by == "api-1"  # not ours to answer: forwarded (Istio's default)
    assert "access-control-allow-origin" not in r.headers
    r = await harness.get(client, url, other)
    assert r.served_by == "api-1" and "access-control-allow-origin" not in r.headers

    # IGNORE: a preflight from an origin not allowed is answered, without CORS headers.
    strict = "http://api:8080/strict"
    r = await harness.get(client, strict, {**other, **PREFLIGHT}, method="OPTIONS")
    assert r.served_by is None and "access-control-allow-origin" not in r.headers

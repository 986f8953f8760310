"""Policy at the edge through real Envoy (local mode): AuthorizationPolicy and
RequestAuthentication selecting the ingress gateway's pod apply to what enters there,
as Istio applies them to its gateways (a path denied at the edge, tokens checked at
the edge, a request principal required), while the mesh behind it is unchanged."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from harness import Harness, istio, namespace, pod, service
from test_gateway import gateway, gateway_pod

pytestmark = pytest.mark.envoy

ISSUER = "https://login.example"
EDGE = {"matchLabels": {"istio": "ingressgateway"}}


def _security(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    obj = istio(kind, name, "ingress", spec)
    obj["apiVersion"] = "security.istio.io/v1"
    return obj


async def test_authorization_and_jwt_at_the_gateway(harness: Harness) -> None:
    gw, web = harness.ip(100), harness.ip(101)
    harness.backend("web-1", web, 8080)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    base = [
        namespace("shop"),
        namespace("ingress"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("web-1", "shop", web, {"app": "web"}, (8080,)),
        gateway_pod(gw),
        gateway(
            "public",
            [{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
        ),
        istio(
            "VirtualService",
            "web",
            "shop",
            {
                "hosts": ["shop.example.com"],
                "gateways": ["ingress/public"],
                "http": [{"route": [{"destination": {"host": "web"}}]}],
            },
        ),
    ]
    harness.write("mesh.yaml", *base)
    await harness.start()
    host = {"host": "shop.example.com"}

    async def status(path: str, token: str | None = None) -> int:
        headers = {**host, **({"authorization": f"Bearer {token}"} if token else {})}
        r = await harness.direct(f"{gw}:8080", path, headers)
        assert (r.served_by == "web-1") == (r.status == 200), r
        return r.status

    assert await status("/admin/users") == 200  # no policy yet

    # A DENY at the edge: refused there, the rest still routed.
    deny = {
        "selector": EDGE,
        "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}],
    }
    await harness.apply("deny.yaml", _security("AuthorizationPolicy", "no-admin", deny))
    assert await status("/admin/users") == 403
    assert await status("/books") == 200

    # Tokens checked at the edge; a request principal required for /private.
    rules = {"issuer": ISSUER, "jwks": json.dumps({"keys": [{**jwk, "alg": "RS256"}]})}
    now = int(time.time())
    token = jwt.encode(
        {"iss": ISSUER, "sub": "alice", "iat": now, "exp": now + 600},
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    forged = jwt.encode(
        {"iss": ISSUER, "sub": "mallory", "iat": now, "exp": now + 600},
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    private = {
        "selector": EDGE,
        "action": "ALLOW",
        "rules": [
            {
                "from": [{"source": {"requestPrincipals": [f"{ISSUER}/*"]}}],
                "to": [{"operation": {"paths": ["/private/*"]}}],
            },
            {"to": [{"operation": {"notPaths": ["/private/*"]}}]},
        ],
    }
    await harness.apply(
        "jwt.yaml",
        _security("RequestAuthentication", "login", {"selector": EDGE, "jwtRules": [rules]}),
        _security("AuthorizationPolicy", "private", private),
    )
    assert await status("/private/orders", token) == 200
    assert await status("/private/orders") == 403  # no token: no principal
    assert await status("/private/orders", forged) == 401  # not the issuer's key
    assert await status("/books") == 200
    assert await status("/admin/users", token) == 403  # the DENY still holds

    # Removed: the edge is open again.
    await harness.apply("deny.yaml")
    await harness.apply("jwt.yaml")
    assert await status("/admin/users") == 200
    assert await status("/private/orders") == 200

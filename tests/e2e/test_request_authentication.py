"""RequestAuthentication through real Envoy: JWTs signed with keys the test generates.
A valid token passes and its claims reach AuthorizationPolicy; an expired one, a
wrong issuer or audience, or a bad signature gets 401; no token passes unless a
policy requires a request principal. The keys are served inline (`jwks`) and from
a JWKS server (`jwksUri`) the sidecar fetches itself."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

ISSUER = "https://issuer.example"
WEB = {"matchLabels": {"app": "web"}}


def _keypair(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return key, {**public, "kid": kid, "alg": "RS256", "use": "sig"}


def _token(key: Any, kid: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "shop", "iat": now, "exp": now + 600, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def _security(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    obj = istio(kind, name, "shop", spec)
    obj["apiVersion"] = "security.istio.io/v1"
    return obj


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A JWKS endpoint on loopback, as an identity provider publishes its keys."""
    keys: dict[str, Any] = {"keys": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(keys).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", keys
    finally:
        server.shutdown()


async def test_jwt_validation_and_claims_in_authorization(
    harness: Harness, jwks_server: tuple[str, dict[str, Any]]
) -> None:
    ips = {n: harness.ip(i) for i, n in enumerate(("web", "client"), 60)}
    harness.backend("web-1", ips["web"], 8080)
    key, jwk = _keypair("k1")
    other_key, _ = _keypair("k1")  # same kid, another key: a forged signature
    rule = {
        "issuer": ISSUER,
        "audiences": ["shop"],
        "jwks": json.dumps({"keys": [jwk]}),
        "outputClaimToHeaders": [{"header": "x-user", "claim": "sub"}],
        "outputPayloadToHeader": "x-jwt-payload",
    }
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("web-1", "shop", ips["web"], {"app": "web"}, (8080,)),
        pod("client", "shop", ips["client"], {"app": "client"}),
        _security("RequestAuthentication", "jwt", {"selector": WEB, "jwtRules": [rule]}),
    )
    await harness.start()

    async def call(token: str | None) -> tuple[int, str | None]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        r = await harness.get(ips["client"], "http://web.shop/", headers)
        return r.status, (r.json["headers"].get("x-user") if r.served_by else None)

    now = int(time.time())
    assert await call(_token(key, "k1")) == (200, "alice")
    # The app gets the verified payload, and not the token itself (forwardOriginalToken
    # is false by default).
    r = await harness.get(
        ips["client"], "http://web.shop/", {"authorization": f"Bearer {_token(key, 'k1')}"}
    )
    seen = r.json["headers"]
    payload = json.loads(base64.urlsafe_b64decode(seen["x-jwt-payload"] + "=="))
    assert (payload["iss"], payload["sub"]) == (ISSUER, "alice")
    assert "authorization" not in seen
    assert await call(None) == (200, None)  # no token: passes, no identity
    expired = _token(key, "k1", exp=now - 600)  # beyond Envoy's 60 s clock skew
    assert (await call(expired))[0] == 401
    assert (await call(_token(key, "k1", iss="https://evil.example")))[0] == 401
    # A valid token for another audience: 403, as Envoy's JWT filter (and so Istio)
    # answers an audience it was not issued for.
    assert (await call(_token(key, "k1", aud="elsewhere")))[0] == 403
    assert (await call(_token(other_key, "k1")))[0] == 401  # not signed by the issuer's key

    # An AuthorizationPolicy requiring a request principal: no token is now refused
    # (403), and a claim decides among valid tokens.
    allow = {
        "selector": WEB,
        "rules": [
            {
                "from": [{"source": {"requestPrincipals": [f"{ISSUER}/*"]}}],
                "when": [{"key": "request.auth.claims[groups]", "values": ["admins"]}],
            }
        ],
    }
    await harness.apply("authz.yaml", _security("AuthorizationPolicy", "admins", allow))
    assert (await call(None))[0] == 403
    assert (await call(_token(key, "k1", groups=["staff"])))[0] == 403
    assert await call(_token(key, "k1", groups=["staff", "admins"])) == (200, "alice")

    # Keys from a JWKS server instead (fetched by the sidecar): a new key is accepted
    # once published.
    uri, published = jwks_server
    key2, jwk2 = _keypair("k2")
    published["keys"] = [jwk2]
    remote = {"issuer": ISSUER, "audiences": ["shop"], "jwksUri": uri}
    await harness.apply(
        "mesh-ra.yaml",
        _security("RequestAuthentication", "jwt", {"selector": WEB, "jwtRules": [remote]}),
    )
    harness.remove("authz.yaml")
    await harness.synced()
    status = 0
    for _ in range(50):  # the listener (with the new rule) replaces the old one
        status, _user = await call(_token(key2, "k2"))
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200
    assert (await call(_token(key, "k1")))[0] == 401  # the inline key is gone


async def test_space_delimited_claims(harness: Harness) -> None:
    """`spaceDelimitedClaims: [scope]`: an OAuth scope string `"read write"` is matched
    one scope at a time by `request.auth.claims[scope]`; without it, as one string."""
    ips = {n: harness.ip(i) for i, n in enumerate(("web", "client"), 70)}
    harness.backend("web-1", ips["web"], 8080)
    key, jwk = _keypair("k1")
    rule: dict[str, Any] = {"issuer": ISSUER, "jwks": json.dumps({"keys": [jwk]})}
    writers = {
        "selector": WEB,
        "rules": [{"when": [{"key": "request.auth.claims[scope]", "values": ["write"]}]}],
    }
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("web-1", "shop", ips["web"], {"app": "web"}, (8080,)),
        pod("client", "shop", ips["client"], {"app": "client"}),
        _security("AuthorizationPolicy", "writers", writers),
    )
    harness.write(
        "ra.yaml", _security("RequestAuthentication", "jwt", {"selector": WEB, "jwtRules": [rule]})
    )
    await harness.start()

    async def status(scope: str) -> int:
        headers = {"authorization": f"Bearer {_token(key, 'k1', scope=scope)}"}
        return (await harness.get(ips["client"], "http://web.shop/", headers)).status

    assert await status("read write") == 403  # one string, not "write"
    assert await status("write") == 200
    split = {**rule, "spaceDelimitedClaims": ["scope"]}
    await harness.apply(
        "ra.yaml", _security("RequestAuthentication", "jwt", {"selector": WEB, "jwtRules": [split]})
    )
    got = 0
    for _ in range(50):  # the listener (with the new rule) replaces the old one
        got = await status("read write")
        if got == 200:
            break
        await asyncio.sleep(0.1)
    assert got == 200
    assert await status("read") == 403

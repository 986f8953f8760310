"""Mesh mutual TLS through real Envoy: sidecars get workload certificates from the
mesh CA over SDS, a client's sidecar originates mTLS to backends that have a sidecar
(auto mTLS) and plaintext to those without, the backend's app sees the caller's
SPIFFE identity, and a peer with a certificate from another CA is refused."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import logging
import ssl
from pathlib import Path

import pytest
from harness import Harness, Response, envoy_stat, istio, namespace, pod, service

from pilotfish_operator.security.ca import MeshCA

pytestmark = pytest.mark.envoy

CLIENT_ID = "spiffe://cluster.local/ns/shop/sa/frontend"


async def _setup(harness: Harness) -> dict[str, str]:
    ips = {n: harness.ip(i) for i, n in enumerate(("client", "web", "legacy"), 40)}
    harness.backend("web-1", ips["web"], 8080)
    harness.backend("legacy-1", ips["legacy"], 8080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        service("legacy", "shop", {"app": "legacy"}, {80: 8080}),
        pod("client", "shop", ips["client"], {"app": "client"}, service_account="frontend"),
        pod("web-1", "shop", ips["web"], {"app": "web"}, (8080,), service_account="web"),
        pod("legacy-1", "shop", ips["legacy"], {"app": "legacy"}, (8080,), inject=False),
    )
    await harness.start()
    return ips


async def test_auto_mtls_carries_the_callers_identity(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ips = await _setup(harness)
    r = await harness.get(ips["client"], "http://web/")
    assert (r.status, r.served_by) == (200, "web-1")
    xfcc = r.json["headers"].get("x-forwarded-client-cert", "")
    # Set by the backend's sidecar from the client's certificate (URI SAN), and the
    # client's sidecar checked the server's: both identities are in the header.
    assert f"URI={CLIENT_ID}" in xfcc, xfcc
    assert "spiffe://cluster.local/ns/shop/sa/web" in xfcc, xfcc
    handshakes = envoy_stat(
        f"{ips['web']}:15000", "listener.{}_15006.ssl.handshake".format(ips["web"])
    )
    assert handshakes >= 1

    # A pod without a sidecar gets plaintext (it could not speak mTLS), and a forged
    # header from the client is not passed on as if the mesh had set it.
    r = await harness.get(ips["client"], "http://legacy/")
    assert (r.status, r.served_by) == (200, "legacy-1")
    assert "x-forwarded-client-cert" not in r.json["headers"]
    r = await harness.get(
        ips["client"], "http://web/", {"x-forwarded-client-cert": "URI=spiffe://evil"}
    )
    assert "spiffe://evil" not in r.json["headers"]["x-forwarded-client-cert"]
    # Keys were issued and delivered; none reached a log line.
    assert "certificate issued for spiffe://cluster.local/ns/shop/sa/frontend" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


async def test_destination_rule_tls_modes_override_auto_mtls(harness: Harness) -> None:
    ips = await _setup(harness)

    def rule(host: str, mode: str) -> dict[str, object]:
        spec = {"host": host, "trafficPolicy": {"tls": {"mode": mode}}}
        return istio("DestinationRule", host, "shop", spec)

    # DISABLE: plaintext to a pod that has a sidecar (PERMISSIVE serves it).
    await harness.apply("web-dr.yaml", rule("web", "DISABLE"))
    r = await harness.get(ips["client"], "http://web/")
    assert r.served_by == "web-1" and "x-forwarded-client-cert" not in r.json["headers"]
    # ISTIO_MUTUAL: mesh mTLS even to a pod without a sidecar, which cannot answer it.
    await harness.apply("legacy-dr.yaml", rule("legacy", "ISTIO_MUTUAL"))
    r = await harness.get(ips["client"], "http://legacy/")
    assert r.served_by is None and r.status == 503


async def test_a_certificate_from_another_ca_is_refused(harness: Harness, tmp_path: Path) -> None:
    ips = await _setup(harness)
    now = datetime.datetime.now(datetime.UTC)
    other = MeshCA.self_signed("cluster.local", now).issue(CLIENT_ID, now)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(other.chain_pem)
    key.write_bytes(other.key_pem)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ips["web"], 15006, ssl=context), 10
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
        if not data:
            raise ConnectionError("closed without an answer")
        pytest.fail(f"answered a peer from another CA: {data[:200]!r}")

    # The same name and a certificate from the mesh's own CA would be served: the
    # refusal is about the issuer (PERMISSIVE plaintext still works, as Istio's default).
    plain = await harness.direct(f"{ips['web']}:15006", "/", {"host": "web.shop"})
    assert plain.served_by == "web-1"
    assert "x-forwarded-client-cert" not in plain.json["headers"]


def _peer_auth(name: str, ns: str, spec: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


async def _plain(harness: Harness, inbound: str) -> Response | None:
    """A client outside the mesh calling the pod's inbound port in plaintext: the
    answer, or None when the connection was closed without one."""
    try:
        return await harness.direct(inbound, "/", {"host": "web.shop"})
    except (OSError, http.client.HTTPException):
        return None


async def test_peer_authentication_modes(harness: Harness) -> None:
    ips = await _setup(harness)
    inbound = f"{ips['web']}:15006"
    plain = await _plain(harness, inbound)
    assert plain is not None and plain.served_by == "web-1"  # PERMISSIVE, Istio's default

    # Mesh-wide STRICT: a plaintext client is refused, mesh clients are unaffected.
    await harness.apply(
        "pa-mesh.yaml", _peer_auth("default", "pilotfish-system", {"mtls": {"mode": "STRICT"}})
    )
    assert await _plain(harness, inbound) is None
    r = await harness.get(ips["client"], "http://web/")
    assert r.served_by == "web-1" and "URI=" in r.json["headers"]["x-forwarded-client-cert"]

    # The workload DISABLEs mTLS: the client's sidecar notices (auto mTLS) and speaks
    # plaintext to it, and the plaintext client is served again.
    web = {"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "DISABLE"}}
    await harness.apply("pa-web.yaml", _peer_auth("web", "shop", web))
    r = await harness.get(ips["client"], "http://web/")
    assert r.served_by == "web-1" and "x-forwarded-client-cert" not in r.json["headers"]
    plain = await _plain(harness, inbound)
    assert plain is not None and plain.served_by == "web-1"

    # PERMISSIVE for the workload but STRICT on its app port 8080: mesh clients get
    # through, a plaintext request for that port does not reach the app.
    web = {
        "selector": {"matchLabels": {"app": "web"}},
        "mtls": {"mode": "PERMISSIVE"},
        "portLevelMtls": {8080: {"mode": "STRICT"}},
    }
    await harness.apply("pa-web.yaml", _peer_auth("web", "shop", web))
    r = await harness.get(ips["client"], "http://web/")
    assert r.served_by == "web-1" and "URI=" in r.json["headers"]["x-forwarded-client-cert"]
    blocked = await _plain(harness, inbound)
    assert blocked is not None and (blocked.status, blocked.served_by) == (404, None)

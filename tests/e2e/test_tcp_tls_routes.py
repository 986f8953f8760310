"""TCP and TLS services through real Envoy in local mode: a client reaches a TCP
service port P at its own pod address:P (its sidecar's listener), VirtualService `tcp`
routes split connections by weight and by the client's labels, and `tls` routes pick
the backend by the SNI name the client sends, without the sidecar decrypting. A pod
with a sidecar is reached through it over mesh mTLS (the SNI names the service port),
where TCP authorization applies."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from harness import Harness, envoy_stat, istio, namespace, pod, service
from test_e2e_canary import within

from pilotfish_operator.security import pki

pytestmark = pytest.mark.envoy

N = 200
SNI_API = "api.ledger.example"
SNI_SERVICE = "ledger.shop.svc.cluster.local"


async def greeting(ip: str, port: int) -> str:
    """Connect as a database client would; the server speaks first (its name)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 10)
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.write(b"ping\n")
        await writer.drain()
        echoed = await asyncio.wait_for(reader.readline(), 10)
        assert echoed == b"ping\n", "the TCP proxy did not carry the client's bytes"
        return line.decode().strip()
    finally:
        writer.close()


async def https_via_sni(ip: str, port: int, sni: str) -> str:
    """A TLS client that names `sni`: the backend that answers says who it is."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(ip, port, ssl=context, server_hostname=sni), 10
    )
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    body = raw.split(b"\r\n\r\n", 1)[1]
    return str(json.loads(body)["name"])


def _certificate(tmp_path: Path) -> tuple[str, str]:
    """The ledger's own certificate (what the sidecar passes through, never opens)."""
    now = datetime.datetime.now(datetime.UTC)
    ca, ca_key = pki.new_ca(now, datetime.timedelta(days=1), pki.name("ledger CA"))
    sans = [x509.DNSName(SNI_API), x509.DNSName(SNI_SERVICE)]
    cert, key = pki.new_leaf(ca, ca_key, sans, now, datetime.timedelta(days=1), pki.name("ledger"))
    cert_file, key_file = tmp_path / "ledger.pem", tmp_path / "ledger.key"
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    return str(cert_file), str(key_file)


def _subsets(host: str) -> dict[str, object]:
    return istio(
        "DestinationRule",
        host,
        "shop",
        {"host": host, "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]},
    )


def _db_routes(v1: int, v2: int) -> dict[str, object]:
    canary = {"match": [{"sourceLabels": {"track": "canary"}}], "route": [_to("db", "v2")]}
    split = {"route": [{**_to("db", "v1"), "weight": v1}, {**_to("db", "v2"), "weight": v2}]}
    return istio("VirtualService", "db", "shop", {"hosts": ["db"], "tcp": [canary, split]})


def _to(host: str, subset: str) -> dict[str, object]:
    return {"destination": {"host": host, "subset": subset}}


async def test_tcp_routes_split_by_weight_and_client_labels(harness: Harness) -> None:
    client, canary, v1, v2, cache = (harness.ip(n) for n in (10, 13, 11, 12, 16))
    harness.backend("db-v1", v1, 5432, tcp=True)
    harness.backend("db-v2", v2, 5432, tcp=True)
    harness.backend("cache-1", cache, 6379, tcp=True)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("db", "shop", {"app": "db"}, (5432,), protocol="tcp"),
        service("cache", "shop", {"app": "cache"}, (6379,), protocol="redis"),
        pod("client", "shop", client, {"app": "client"}),
        pod(
            "canary-client",
            "shop",
            canary,
            {"app": "client", "track": "canary"},
            service_account="canary",
        ),
        pod("db-v1", "shop", v1, {"app": "db", "version": "v1"}, (5432,)),
        pod("db-v2", "shop", v2, {"app": "db", "version": "v2"}, (5432,)),
        pod("cache-1", "shop", cache, {"app": "cache"}, (6379,), inject=False),
        _subsets("db"),
    )
    await harness.start()

    # No VirtualService: the client's own address at the service port reaches the
    # service, whose endpoints (with or without a sidecar) are balanced.
    seen = {await greeting(client, 5432) for _ in range(40)}
    assert seen == {"db-v1", "db-v2"}
    assert await greeting(client, 6379) == "cache-1"

    await harness.apply("db.yaml", _db_routes(100, 0))
    assert {await greeting(client, 5432) for _ in range(40)} == {"db-v1"}
    # The sourceLabels route applies to the canary client only.
    assert {await greeting(canary, 5432) for _ in range(20)} == {"db-v2"}

    await harness.apply("db.yaml", _db_routes(70, 30))
    answers = [await greeting(client, 5432) for _ in range(N)]
    assert set(answers) == {"db-v1", "db-v2"}
    assert within(answers.count("db-v2"), N, 0.3), answers.count("db-v2")

    # An HTTP request to a TCP port is carried as bytes, not routed: the server's
    # greeting comes back first, whatever the request said.
    reader, writer = await asyncio.open_connection(client, 6379)
    writer.write(b"GET / HTTP/1.1\r\nHost: db\r\n\r\n")
    assert (await asyncio.wait_for(reader.readline(), 10)).strip() == b"cache-1"
    writer.close()

    # The db pods have sidecars: the connections went through them over mutual TLS
    # (the SNI names the service port), so TCP authorization applies there too.
    assert await asyncio.to_thread(
        envoy_stat, f"{v2}:15000", "cluster.inbound|5432||.upstream_cx_total"
    )
    deny = {
        "selector": {"matchLabels": {"app": "db", "version": "v2"}},
        "action": "DENY",
        "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/canary"]}}]}],
    }
    policy = istio("AuthorizationPolicy", "no-canary", "shop", deny)
    policy["apiVersion"] = "security.istio.io/v1"
    await harness.apply("authz.yaml", policy)
    await asyncio.sleep(1.5)  # listener changes drain old connections (local mode: 1 s)
    # Envoy checks a TCP connection's authorization when the client first sends
    # (as for Istio, a server-first protocol's greeting gets out before that): the
    # canary's first bytes close the connection instead of being echoed.
    reader, writer = await asyncio.open_connection(canary, 5432)
    await asyncio.wait_for(reader.readline(), 10)  # the greeting, or b"" if closed
    writer.write(b"ping\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.readline(), 10) == b"", "the canary was let in"
    writer.close()
    denied = await asyncio.to_thread(envoy_stat, f"{v2}:15000", "inbound_5432.deny.rbac.denied")
    assert denied == 1
    # Everyone else still reaches both (70/30: 40 tries miss v2 with p = 0.7**40 < 1e-6).
    assert {await greeting(client, 5432) for _ in range(40)} == {"db-v1", "db-v2"}


async def test_tls_routes_pick_the_backend_by_sni(harness: Harness, tmp_path: Path) -> None:
    client, v1, v2 = harness.ip(20), harness.ip(21), harness.ip(22)
    cert = _certificate(tmp_path)
    harness.backend("ledger-v1", v1, 8443, tls=cert)
    harness.backend("ledger-v2", v2, 8443, tls=cert)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("ledger", "shop", {"app": "ledger"}, (8443,), protocol="tls"),
        pod("client", "shop", client, {"app": "client"}),
        pod("ledger-v1", "shop", v1, {"app": "ledger", "version": "v1"}, (8443,)),
        pod("ledger-v2", "shop", v2, {"app": "ledger", "version": "v2"}, (8443,), inject=False),
        _subsets("ledger"),
    )
    await harness.start()

    # No VirtualService: TLS to the service is passed through (the backend's own
    # certificate answers) and balanced over both pods.
    seen = {await https_via_sni(client, 8443, SNI_SERVICE) for _ in range(30)}
    assert seen == {"ledger-v1", "ledger-v2"}

    vs = {
        "hosts": [SNI_SERVICE, SNI_API],
        "tls": [
            {"match": [{"sniHosts": [SNI_API]}], "route": [_to("ledger", "v2")]},
            {"match": [{"sniHosts": [SNI_SERVICE], "port": 8443}], "route": [_to("ledger", "v1")]},
        ],
    }
    await harness.apply("ledger.yaml", istio("VirtualService", "ledger", "shop", vs))
    assert {await https_via_sni(client, 8443, SNI_API) for _ in range(20)} == {"ledger-v2"}
    assert {await https_via_sni(client, 8443, SNI_SERVICE) for _ in range(20)} == {"ledger-v1"}
    # A name no route matches is not forwarded anywhere.
    with pytest.raises((ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError)):
        await https_via_sni(client, 8443, "other.example")

"""Gateways speaking the mesh's own mTLS, through real Envoy in local mode.

Istio's egress-gateway pattern: a sidecar's request for an external host (a
ServiceEntry; a local server stands in for it) is routed by a VirtualService bound to
`mesh` and to the egress Gateway: from the sidecar to the egress gateway over mesh mTLS
(the Gateway server's ISTIO_MUTUAL, the DestinationRule's ISTIO_MUTUAL), and from the
gateway out. The external server sees the gateway's address, the client its answer.

The same for TLS the app originates: its SNI picks the sidecar's `tls` route to the
gateway, inside mesh mTLS; the gateway's TLS server (ISTIO_MUTUAL) decrypts the mesh
layer and its `tcp` route sends the app's TLS on.

AUTO_PASSTHROUGH (Istio's east-west gateway): a mesh client's TLS connection whose SNI
names a mesh cluster (`outbound_.<port>_.<subset>_.<host>`) goes through the gateway
unopened to that cluster's endpoints, with no VirtualService: the subset's sidecar
terminates it.

Certificates from files in the gateway (`serverCertificate`, `privateKey`,
`caCertificates`) rather than a Secret.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from harness import Harness, istio, namespace, pod, service
from test_gateway import _https_get, _leaf

from pilotfish_operator.security import pki

pytestmark = pytest.mark.envoy

GATEWAY_LABELS = {"istio": "egressgateway", "pilotfish.io/proxy": "gateway"}
EGRESS_HOST = "egressgateway.edge.svc.cluster.local"


def _external(harness: Harness, ip: str) -> list[dict[str, Any]]:
    """api.example.com (a ServiceEntry, the stand-in server at ip:8080), the egress
    gateway pod and its Service, the Gateway, and Istio's routing through it."""
    return [
        namespace("shop"),
        namespace("edge", injected=False),
        pod("client", "shop", harness.ip(10), {"app": "client"}),
        pod("egressgateway", "edge", harness.ip(2), GATEWAY_LABELS, service_account="egress"),
        service("egressgateway", "edge", {"istio": "egressgateway"}, {443: 443}, "https"),
        istio(
            "ServiceEntry",
            "api",
            "shop",
            {
                "hosts": ["api.example.com"],
                "location": "MESH_EXTERNAL",
                "resolution": "STATIC",
                "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 8080}],
                "endpoints": [{"address": ip}],
            },
        ),
        istio(
            "Gateway",
            "egress",
            "edge",
            {
                "selector": {"istio": "egressgateway"},
                "servers": [
                    {
                        "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                        "hosts": ["api.example.com"],
                        "tls": {"mode": "ISTIO_MUTUAL"},
                    }
                ],
            },
        ),
        istio(
            "DestinationRule",
            "egressgateway",
            "shop",
            {"host": EGRESS_HOST, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
        ),
        istio(
            "VirtualService",
            "api-through-egress",
            "shop",
            {
                "hosts": ["api.example.com"],
                "gateways": ["mesh", "edge/egress"],
                "http": [
                    {
                        "match": [{"gateways": ["mesh"], "port": 80}],
                        "route": [{"destination": {"host": EGRESS_HOST, "port": {"number": 443}}}],
                    },
                    {
                        "match": [{"gateways": ["edge/egress"], "port": 443}],
                        "route": [
                            {"destination": {"host": "api.example.com", "port": {"number": 80}}}
                        ],
                    },
                ],
            },
        ),
    ]


async def test_egress_gateway_over_istio_mutual(harness: Harness) -> None:
    client, gw, api = harness.ip(10), harness.ip(2), harness.ip(50)
    harness.backend("external-api", api, 8080)
    harness.write("mesh.yaml", *_external(harness, api))
    await harness.start()

    for _ in range(5):
        r = await harness.get(client, "http://api.example.com/orders?id=7")
        assert (r.status, r.served_by) == (200, "external-api")
        # It left the mesh from the egress gateway, not from the client's sidecar.
        assert r.json["client"] == gw
        assert r.json["path"] == "/orders?id=7"
        assert r.json["headers"]["host"] == "api.example.com"

    # The gateway's server takes only the mesh's mTLS: no client certificate, no answer.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(gw, 443, ssl=context), 10)
        writer.write(b"GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
        if not data:
            raise ConnectionError("closed without an answer")
        pytest.fail(f"answered a client without a mesh certificate: {data[:200]!r}")

    # Without the route through the gateway, the sidecar goes straight out.
    harness.remove("mesh.yaml")
    await harness.apply(
        "mesh.yaml", *[o for o in _external(harness, api) if o["kind"] != "VirtualService"]
    )
    r = await harness.get(client, "http://api.example.com/")
    assert r.served_by == "external-api" and r.json["client"] != gw


async def test_auto_passthrough_routes_by_mesh_sni(harness: Harness, tmp_path: Path) -> None:
    gw, v1, v2 = harness.ip(2), harness.ip(21), harness.ip(22)
    harness.backend("reviews-v1", v1, 9080)
    harness.backend("reviews-v2", v2, 9080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("edge", injected=False),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
        pod("reviews-v1", "shop", v1, {"app": "reviews", "version": "v1"}, (9080,)),
        pod("reviews-v2", "shop", v2, {"app": "reviews", "version": "v2"}, (9080,)),
        pod("eastwest", "edge", gw, {"istio": "eastwestgateway", "pilotfish.io/proxy": "gateway"}),
        istio(
            "DestinationRule",
            "reviews",
            "shop",
            {
                "host": "reviews",
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        ),
        istio(
            "Gateway",
            "cross-network",
            "edge",
            {
                "selector": {"istio": "eastwestgateway"},
                "servers": [
                    {
                        "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                        "hosts": ["*.local"],
                        "tls": {"mode": "AUTO_PASSTHROUGH"},
                    }
                ],
            },
        ),
    )
    await harness.start()
    # A mesh client elsewhere (another network): its certificate from the mesh CA.
    assert harness.mesh is not None
    now = datetime.datetime.now(datetime.UTC)
    ca = harness.mesh.issuer.ca
    cert = ca.issue("spiffe://cluster.local/ns/remote/sa/client", now)
    (tmp_path / "cert.pem").write_bytes(cert.chain_pem)
    (tmp_path / "key.pem").write_bytes(cert.key_pem)

    async def call(sni: str) -> str:
        context = ssl.create_default_context(cadata=cert.roots_pem.decode())
        context.check_hostname = False  # mesh certificates name identities, not hosts
        context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(gw, 15443, ssl=context, server_hostname=sni), 10
        )
        try:
            # The far end is the subset's sidecar: its certificate, not the gateway's.
            peer = writer.get_extra_info("ssl_object").getpeercert()
            uris = {v for k, v in peer.get("subjectAltName", ()) if k == "URI"}
            assert uris == {"spiffe://cluster.local/ns/shop/sa/default"}
            writer.write(b"GET / HTTP/1.1\r\nHost: reviews.shop\r\nConnection: close\r\n\r\n")
            await writer.drain()
            data = (await asyncio.wait_for(reader.read(), 10)).decode()
        finally:
            writer.close()
        assert data.startswith("HTTP/1.1 200"), data[:200]
        (served,) = [
            line.split(":", 1)[1].strip()
            for line in data.split("\r\n")
            if line.lower().startswith("x-served-by:")
        ]
        return served

    seen: Counter[str] = Counter()
    for _ in range(10):
        seen[await call("outbound_.9080_.v2_.reviews.shop.svc.cluster.local")] += 1
        seen[await call("outbound_.9080_.v1_.reviews.shop.svc.cluster.local")] += 1
    assert seen == {"reviews-v2": 10, "reviews-v1": 10}
    both: Counter[str] = Counter()
    for _ in range(20):
        both[await call("outbound_.9080_._.reviews.shop.svc.cluster.local")] += 1
    assert set(both) == {"reviews-v1", "reviews-v2"}, both
    # An SNI naming no mesh cluster: the connection is closed.
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await call("outbound_.9080_._.unknown.shop.svc.cluster.local")


async def test_gateway_certificates_from_files(harness: Harness, tmp_path: Path) -> None:
    """serverCertificate, privateKey and caCertificates (MUTUAL): files Envoy reads in
    the gateway's filesystem (here: the machine's; in a cluster: mounted into the pod)."""
    gw, v1 = harness.ip(3), harness.ip(31)
    harness.backend("reviews-v1", v1, 9080)
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.new_ca(now, datetime.timedelta(days=1), pki.name("edge CA"))
    files = {"roots.pem": ca[0]}
    files["tls.crt"], files["tls.key"] = _leaf(ca, "reviews.example.com")
    client_usage = (x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,)
    sans = [x509.DNSName("partner.example.org")]
    files["client.crt"], files["client.key"] = pki.new_leaf(
        ca[0], ca[1], sans, now, datetime.timedelta(days=1), None, client_usage
    )
    stranger = pki.new_ca(now, datetime.timedelta(days=1), pki.name("stranger CA"))
    files["stranger.crt"], files["stranger.key"] = pki.new_leaf(
        stranger[0], stranger[1], sans, now, datetime.timedelta(days=1), None, client_usage
    )
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    tls = {
        "mode": "MUTUAL",
        "serverCertificate": str(tmp_path / "tls.crt"),
        "privateKey": str(tmp_path / "tls.key"),
        "caCertificates": str(tmp_path / "roots.pem"),
    }

    def gateway(tls: dict[str, Any]) -> dict[str, Any]:
        server = {
            "port": {"number": 8443, "name": "https", "protocol": "HTTPS"},
            "hosts": ["reviews.example.com"],
            "tls": tls,
        }
        return istio(
            "Gateway",
            "files",
            "edge",
            {"selector": {"istio": "ingressgateway"}, "servers": [server]},
        )

    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("edge", injected=False),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
        pod("reviews-v1", "shop", v1, {"app": "reviews"}, (9080,)),
        pod("ingress", "edge", gw, {"istio": "ingressgateway", "pilotfish.io/proxy": "gateway"}),
        istio(
            "VirtualService",
            "reviews-edge",
            "shop",
            {
                "hosts": ["reviews.example.com"],
                "gateways": ["edge/files"],
                "http": [{"route": [{"destination": {"host": "reviews"}}]}],
            },
        ),
    )
    harness.write("gateway.yaml", gateway(tls))
    await harness.start()
    roots, client = tmp_path / "roots.pem", (tmp_path / "client.crt", tmp_path / "client.key")
    address = f"{gw}:8443"
    status, served, _ = await asyncio.to_thread(
        _https_get, address, "reviews.example.com", roots, client
    )
    assert (status, served) == (200, "reviews-v1")
    # MUTUAL: no client certificate, no answer; nor with one from another CA.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(_https_get, address, "reviews.example.com", roots)
    stranger_cert = (tmp_path / "stranger.crt", tmp_path / "stranger.key")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(_https_get, address, "reviews.example.com", roots, stranger_cert)
    # insecureSkipVerify: the stranger's certificate is checked but let through.
    await harness.apply("gateway.yaml", gateway({**tls, "insecureSkipVerify": True}))
    status = 0
    for _ in range(50):  # the listener with the new TLS context replaces the old one
        try:
            status, served, _ = await asyncio.to_thread(
                _https_get, address, "reviews.example.com", roots, stranger_cert
            )
        except (ssl.SSLError, ConnectionError):
            await asyncio.sleep(0.1)
            continue
        break
    assert (status, served) == (200, "reviews-v1")

    # tlsCertificates: the same files given as a list (SIMPLE: no client certificate).
    pair = {"serverCertificate": tls["serverCertificate"], "privateKey": tls["privateKey"]}
    await harness.apply("gateway.yaml", gateway({"mode": "SIMPLE", "tlsCertificates": [pair]}))
    for _ in range(50):
        try:
            status, served, _ = await asyncio.to_thread(
                _https_get, address, "reviews.example.com", roots
            )
        except (ssl.SSLError, ConnectionError):
            await asyncio.sleep(0.1)
            continue
        break
    assert (status, served) == (200, "reviews-v1")


async def test_egress_gateway_for_tls_traffic_over_istio_mutual(
    harness: Harness, tmp_path: Path
) -> None:
    """Istio's egress pattern for TLS the app originates: the sidecar's `tls` route (by
    SNI) sends it inside mesh mTLS to the gateway's TLS server (ISTIO_MUTUAL), whose
    `tcp` route sends the app's own TLS bytes on to the external host."""
    client, gw, api = harness.ip(10), harness.ip(2), harness.ip(51)
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.new_ca(now, datetime.timedelta(days=1), pki.name("external CA"))
    cert, key = _leaf(ca, "api.example.com")
    for name, data in {"roots.pem": ca[0], "api.crt": cert, "api.key": key}.items():
        (tmp_path / name).write_bytes(data)
    harness.backend(
        "external-api", api, 8443, tls=(str(tmp_path / "api.crt"), str(tmp_path / "api.key"))
    )
    base = [o for o in _external(harness, api) if o["kind"] not in ("ServiceEntry", "Gateway")]
    harness.write(
        "mesh.yaml",
        *[o for o in base if o["kind"] not in ("VirtualService", "Service")],
        service("egressgateway", "edge", {"istio": "egressgateway"}, {443: 443}, "tls"),
        istio(
            "ServiceEntry",
            "api",
            "shop",
            {
                "hosts": ["api.example.com"],
                "location": "MESH_EXTERNAL",
                "resolution": "STATIC",
                "ports": [{"number": 443, "name": "tls", "protocol": "TLS", "targetPort": 8443}],
                "endpoints": [{"address": api}],
            },
        ),
        istio(
            "Gateway",
            "egress",
            "edge",
            {
                "selector": {"istio": "egressgateway"},
                "servers": [
                    {
                        "port": {"number": 443, "name": "tls", "protocol": "TLS"},
                        "hosts": ["api.example.com"],
                        "tls": {"mode": "ISTIO_MUTUAL"},
                    }
                ],
            },
        ),
        istio(
            "VirtualService",
            "api-through-egress",
            "shop",
            {
                "hosts": ["api.example.com"],
                "gateways": ["mesh", "edge/egress"],
                "tls": [
                    {
                        "match": [
                            {"gateways": ["mesh"], "port": 443, "sniHosts": ["api.example.com"]}
                        ],
                        "route": [{"destination": {"host": EGRESS_HOST, "port": {"number": 443}}}],
                    }
                ],
                "tcp": [
                    {
                        "match": [{"gateways": ["edge/egress"], "port": 443}],
                        "route": [
                            {"destination": {"host": "api.example.com", "port": {"number": 443}}}
                        ],
                    }
                ],
            },
        ),
    )
    await harness.start()
    # Local mode: the app reaches a TLS service port at its own address (no capture).
    context = ssl.create_default_context(cafile=str(tmp_path / "roots.pem"))
    for _ in range(3):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(client, 443, ssl=context, server_hostname="api.example.com"),
            10,
        )
        writer.write(b"GET /v1 HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = (await asyncio.wait_for(reader.read(), 10)).decode()
        writer.close()
        head, _, body = data.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 200") and "x-served-by: external-api" in head, head
        # The app's TLS reached the external server, from the egress gateway's address.
        assert json.loads(body)["client"] == gw

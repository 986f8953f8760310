"""An ingress gateway through real Envoy in local mode: a pod labelled as a gateway
proxy gets an Envoy of its own listening on its address at its Gateways' ports;
VirtualServices bound to a Gateway route what enters there (the canary split at the
edge, a route for one gateway only), a host no server names gets 404, and the callee's
sidecar counts the gateway as the source."""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import socket
import ssl
from collections import Counter
from pathlib import Path

import pytest
from cryptography import x509
from harness import Harness, istio, namespace, pod, series, service, total

from pilotfish_operator.security import pki

pytestmark = pytest.mark.envoy

N = 400


def within(count: int, n: int, share: float) -> bool:
    """Within 5 standard deviations of the binomial mean."""
    return abs(count - n * share) <= 5 * math.sqrt(n * share * (1 - share))


def gateway(name: str, servers: list[dict[str, object]]) -> dict[str, object]:
    """A Gateway of namespace ingress selecting the ingress gateway pod."""
    spec = {"selector": {"istio": "ingressgateway"}, "servers": servers}
    return istio("Gateway", name, "ingress", spec)


def gateway_pod(ip: str) -> dict[str, object]:
    labels = {"istio": "ingressgateway", "app": "ingressgateway", "pilotfish.io/proxy": "gateway"}
    return pod("ingressgateway", "ingress", ip, labels)


async def test_ingress_gateway_routes_bound_virtual_services(
    harness: Harness, tmp_path: Path
) -> None:
    gw, v1, v2 = harness.ip(100), harness.ip(101), harness.ip(102)
    harness.backend("reviews-v1", v1, 9080)
    harness.backend("reviews-v2", v2, 9080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("ingress"),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
        pod("reviews-v1", "shop", v1, {"app": "reviews", "version": "v1"}, (9080,)),
        pod("reviews-v2", "shop", v2, {"app": "reviews", "version": "v2"}, (9080,)),
        gateway_pod(gw),
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
        gateway(
            "public",
            [
                {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
                {
                    "port": {"number": 8081, "name": "http-beta", "protocol": "HTTP"},
                    "hosts": ["shop/*.example.com"],
                },
            ],
        ),
        gateway(
            "redirect",
            [
                {
                    "port": {"number": 8082, "name": "http-redirect", "protocol": "HTTP"},
                    "hosts": ["*"],
                    "tls": {"httpsRedirect": True},
                }
            ],
        ),
        istio(
            "VirtualService",
            "reviews-edge",
            "shop",
            {
                "hosts": ["reviews.example.com"],
                "gateways": ["ingress/public", "ingress/redirect"],
                "http": [
                    {
                        "match": [{"uri": {"prefix": "/beta"}, "port": 8081}],
                        "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
                    },
                    {
                        "route": [
                            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                            {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10},
                        ]
                    },
                ],
            },
        ),
    )
    await harness.start()
    state = json.loads((harness.workdir / "state.json").read_text())
    entry = state["pods"]["ingress/ingressgateway"]
    ports = (8080, 8081, 8082)
    assert entry["gateway"] == {str(p): f"{gw}:{p}" for p in ports}
    assert entry["injected"] is False and entry["synced"] is True

    host = {"host": "reviews.example.com"}
    served: Counter[str | None] = Counter()
    for _ in range(N):
        r = await harness.direct(f"{gw}:8080", "/", host)
        assert r.status == 200
        served[r.served_by] += 1
    assert set(served) == {"reviews-v1", "reviews-v2"}
    assert within(served["reviews-v2"], N, 0.1), served

    # The route for port 8081 only; the split elsewhere on that port.
    for _ in range(5):
        r = await harness.direct(f"{gw}:8081", "/beta/x", host)
        assert r.served_by == "reviews-v2"
    # Port 80 style host forms: with the port in the Host header too.
    r = await harness.direct(f"{gw}:8081", "/", {"host": "reviews.example.com:8081"})
    assert r.status == 200
    # httpsRedirect: a 301 to the same URL over https, nothing proxied.
    r = await harness.direct(f"{gw}:8082", "/books?page=2", host)
    assert (r.status, r.headers["location"]) == (301, "https://reviews.example.com/books?page=2")
    # A host no server names.
    assert (await harness.direct(f"{gw}:8080", "/", {"host": "unknown.example.org"})).status == 404

    # The callees' sidecars count the gateway as the source (peer headers, over mTLS):
    # the split's requests, the five /beta ones and the one with host:port.
    async def counted(admin: str) -> list[tuple[dict[str, str], float]]:
        rows = await asyncio.to_thread(series, admin, "envoy_istio_requests_total")
        return [(labels, v) for labels, v in rows if labels.get("reporter") == "destination"]

    rows: list[tuple[dict[str, str], float]] = []
    for _ in range(100):
        rows = [*await counted(f"{v1}:15000"), *await counted(f"{v2}:15000")]
        if total(rows, source_workload="ingressgateway") == N + 6:
            break
        await asyncio.sleep(0.1)
    assert total(rows, source_workload="ingressgateway") == N + 6, rows
    assert total(rows, source_workload="ingressgateway", connection_security_policy="mutual_tls")
    assert total(rows) == N + 6  # nothing reached them any other way


def _leaf(ca: tuple[bytes, bytes], host: str) -> tuple[bytes, bytes]:
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    return pki.new_leaf(ca[0], ca[1], [x509.DNSName(host)], now, day, pki.name(host))


def _tls_secret(name: str, cert: bytes, key: bytes, ca: bytes = b"") -> dict[str, object]:
    data = {"tls.crt": cert.decode(), "tls.key": key.decode()}
    if ca:
        data["ca.crt"] = ca.decode()  # the client CA of a MUTUAL server
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "ingress"},
        "type": "kubernetes.io/tls",
        "stringData": data,
    }


def _https_get(
    address: str, sni: str, roots: Path, client: tuple[Path, Path] | None = None
) -> tuple[int, str, int]:
    """One HTTPS request on a new connection: (status, who answered, the serial of the
    certificate the gateway presented). `client`: a certificate and key to present."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(roots))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(f"GET / HTTP/1.1\r\nhost: {sni}\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    status = int(head.split()[1])
    served = next(
        (
            line.split(":", 1)[1].strip()
            for line in head.splitlines()
            if line.lower().startswith("x-served-by:")
        ),
        "",
    )
    return status, served, x509.load_der_x509_certificate(der).serial_number


async def test_https_gateway_picks_certificates_by_sni_and_rotates_them(
    harness: Harness, tmp_path: Path
) -> None:
    gw, v1, v2 = harness.ip(110), harness.ip(111), harness.ip(112)
    harness.backend("reviews-v1", v1, 9080)
    harness.backend("ratings-v1", v2, 9080)
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.new_ca(now, datetime.timedelta(days=1), pki.name("edge CA"))
    roots = tmp_path / "roots.pem"
    roots.write_bytes(ca[0])
    reviews, ratings = _leaf(ca, "reviews.example.com"), _leaf(ca, "ratings.example.com")

    def server(host: str, secret: str) -> dict[str, object]:
        port = {"number": 8443, "name": f"https-{secret}", "protocol": "HTTPS"}
        tls = {"mode": "SIMPLE", "credentialName": secret, "minProtocolVersion": "TLSV1_2"}
        return {"port": port, "hosts": [host], "tls": tls}

    def route(name: str, host: str) -> dict[str, object]:
        return istio(
            "VirtualService",
            name,
            "shop",
            {
                "hosts": [host],
                "gateways": ["ingress/secure"],
                "http": [{"route": [{"destination": {"host": name}}]}],
            },
        )

    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("ingress"),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
        service("ratings", "shop", {"app": "ratings"}, (9080,)),
        pod("reviews-v1", "shop", v1, {"app": "reviews"}, (9080,)),
        pod("ratings-v1", "shop", v2, {"app": "ratings"}, (9080,)),
        gateway_pod(gw),
        gateway(
            "secure",
            [
                server("reviews.example.com", "reviews-cert"),
                server("ratings.example.com", "ratings-cert"),
            ],
        ),
        route("reviews", "reviews.example.com"),
        route("ratings", "ratings.example.com"),
    )
    harness.write(
        "secrets.yaml",
        _tls_secret("reviews-cert", *reviews),
        _tls_secret("ratings-cert", *ratings),
    )
    await harness.start()
    address = f"{gw}:8443"

    def serial(pem: bytes) -> int:
        return x509.load_pem_x509_certificate(pem).serial_number

    # SNI picks the certificate and the server's routes.
    for sni, leaf, backend in (
        ("reviews.example.com", reviews, "reviews-v1"),
        ("ratings.example.com", ratings, "ratings-v1"),
    ):
        status, served, presented = await asyncio.to_thread(_https_get, address, sni, roots)
        assert (status, served, presented) == (200, backend, serial(leaf[0]))

    # Rotation: the Secret is replaced while requests keep coming on new connections;
    # none fails, and the new certificate is presented once the gateway has it.
    renewed = _leaf(ca, "reviews.example.com")
    failures: list[BaseException] = []
    seen: set[int] = set()
    stop = asyncio.Event()

    async def keep_calling() -> None:
        while not stop.is_set():
            try:
                status, _, presented = await asyncio.to_thread(
                    _https_get, address, "reviews.example.com", roots
                )
                assert status == 200
                seen.add(presented)
            except (OSError, AssertionError) as exc:
                failures.append(exc)

    caller = asyncio.create_task(keep_calling())
    await asyncio.sleep(0.5)
    await harness.apply(
        "secrets.yaml",
        _tls_secret("reviews-cert", *renewed),
        _tls_secret("ratings-cert", *ratings),
    )
    for _ in range(100):
        if serial(renewed[0]) in seen:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    stop.set()
    await caller
    assert not failures, failures
    assert serial(renewed[0]) in seen and serial(reviews[0]) in seen


async def test_mutual_tls_at_the_gateway_requires_a_client_certificate(
    harness: Harness, tmp_path: Path
) -> None:
    gw, v1 = harness.ip(120), harness.ip(121)
    harness.backend("reviews-v1", v1, 9080)
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    server_ca = pki.new_ca(now, day, pki.name("edge CA"))
    client_ca = pki.new_ca(now, day, pki.name("partners CA"))
    roots = tmp_path / "roots.pem"
    roots.write_bytes(server_ca[0])
    cert, key = _leaf(server_ca, "partners.example.com")
    secret = _tls_secret("partners-cert", cert, key, client_ca[0])

    def client_files(ca: tuple[bytes, bytes], name: str) -> tuple[Path, Path]:
        usage = (x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,)
        sans = [x509.DNSName(name)]
        pem, private = pki.new_leaf(ca[0], ca[1], sans, now, day, pki.name(name), usage)
        (tmp_path / f"{name}.pem").write_bytes(pem)
        (tmp_path / f"{name}.key").write_bytes(private)
        return tmp_path / f"{name}.pem", tmp_path / f"{name}.key"

    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("ingress"),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
        pod("reviews-v1", "shop", v1, {"app": "reviews"}, (9080,)),
        gateway_pod(gw),
        secret,
        gateway(
            "partners",
            [
                {
                    "port": {"number": 9443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["partners.example.com"],
                    "tls": {
                        "mode": "MUTUAL",
                        "credentialName": "partners-cert",
                        "subjectAltNames": ["acme.partners.example.com"],
                    },
                }
            ],
        ),
        istio(
            "VirtualService",
            "partners",
            "shop",
            {
                "hosts": ["partners.example.com"],
                "gateways": ["ingress/partners"],
                "http": [{"route": [{"destination": {"host": "reviews"}}]}],
            },
        ),
    )
    await harness.start()
    address, sni = f"{gw}:9443", "partners.example.com"
    acme = client_files(client_ca, "acme.partners.example.com")
    status, served, _ = await asyncio.to_thread(_https_get, address, sni, roots, acme)
    assert (status, served) == (200, "reviews-v1")
    # No client certificate, one from another CA, or one without the allowed name: the
    # handshake fails (nothing reaches the service).
    stranger_ca = pki.new_ca(now, day, pki.name("stranger CA"))
    for who in (
        None,
        client_files(stranger_ca, "acme.partners.example.com"),
        client_files(client_ca, "other.partners.example.com"),
    ):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            await asyncio.to_thread(_https_get, address, sni, roots, who)


async def test_tls_passthrough_to_a_backend_holding_its_own_certificate(
    harness: Harness, tmp_path: Path
) -> None:
    gw, ledger = harness.ip(130), harness.ip(131)
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.new_ca(now, datetime.timedelta(days=1), pki.name("ledger CA"))
    cert, key = _leaf(ca, "api.ledger.example")
    (tmp_path / "ledger.pem").write_bytes(cert)
    (tmp_path / "ledger.key").write_bytes(key)
    roots = tmp_path / "roots.pem"
    roots.write_bytes(ca[0])
    harness.backend(
        "ledger-v1", ledger, 8443, tls=(str(tmp_path / "ledger.pem"), str(tmp_path / "ledger.key"))
    )
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("ingress"),
        service("ledger", "shop", {"app": "ledger"}, (8443,), protocol="tls"),
        pod("ledger-v1", "shop", ledger, {"app": "ledger"}, (8443,), inject=False),
        gateway_pod(gw),
        gateway(
            "passthrough",
            [
                {
                    "port": {"number": 9444, "name": "tls", "protocol": "TLS"},
                    "hosts": ["api.ledger.example"],
                    "tls": {"mode": "PASSTHROUGH"},
                }
            ],
        ),
        istio(
            "VirtualService",
            "ledger",
            "shop",
            {
                "hosts": ["api.ledger.example"],
                "gateways": ["ingress/passthrough"],
                "tls": [
                    {
                        "match": [{"sniHosts": ["api.ledger.example"]}],
                        "route": [{"destination": {"host": "ledger", "port": {"number": 8443}}}],
                    }
                ],
            },
        ),
    )
    await harness.start()
    # The backend's own certificate comes back, unopened by the gateway.
    status, served, presented = await asyncio.to_thread(
        _https_get, f"{gw}:9444", "api.ledger.example", roots
    )
    assert (status, served) == (200, "ledger-v1")
    assert presented == x509.load_pem_x509_certificate(cert).serial_number
    # A name no route has: no filter chain takes the connection.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        await asyncio.to_thread(_https_get, f"{gw}:9444", "other.ledger.example", roots)


async def test_tcp_server_proxies_bytes_to_the_bound_route(harness: Harness) -> None:
    gw, db = harness.ip(140), harness.ip(141)
    harness.backend("db-1", db, 5432, tcp=True)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("ingress"),
        service("db", "shop", {"app": "db"}, (5432,), protocol="tcp"),
        pod("db-1", "shop", db, {"app": "db"}, (5432,)),
        gateway_pod(gw),
        gateway(
            "tcp", [{"port": {"number": 9400, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}]
        ),
        istio(
            "VirtualService",
            "db",
            "shop",
            {
                "hosts": ["*"],
                "gateways": ["ingress/tcp"],
                "tcp": [{"match": [{"port": 9400}], "route": [{"destination": {"host": "db"}}]}],
            },
        ),
    )
    await harness.start()
    reader, writer = await asyncio.open_connection(gw, 9400)
    try:
        assert (await asyncio.wait_for(reader.readline(), 10)).strip() == b"db-1"
        writer.write(b"ping\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)) == b"ping\n"
    finally:
        writer.close()
        await writer.wait_closed()

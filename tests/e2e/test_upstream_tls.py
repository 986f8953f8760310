"""DestinationRule `tls` through real Envoy: the sidecar originates TLS to a non-mesh
HTTPS backend (SIMPLE, verifying its certificate and SAN) and presents a client
certificate where the backend requires one (MUTUAL)."""

from __future__ import annotations

import datetime
import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


def _issue(
    subject: str, issuer: tuple[Any, x509.Name] | None, dns: str | None, ca: bool = False
) -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer_key, signer_name = issuer if issuer else (key, name)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), False)
    return key, builder.sign(signer_key, hashes.SHA256())


def _write(path: Path, key: Any, cert: x509.Certificate) -> tuple[str, str]:
    cert_file, key_file = path.with_suffix(".pem"), path.with_suffix(".key")
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


async def test_simple_and_mutual_tls_origination(harness: Harness, tmp_path: Path) -> None:
    ca_key, ca_cert = _issue("test CA", None, None, ca=True)
    ca_file, _ = _write(tmp_path / "ca", ca_key, ca_cert)
    signer = (ca_key, ca_cert.subject)
    server = _write(tmp_path / "server", *_issue("payments", signer, "payments.example"))
    client_cert, client_key = _write(tmp_path / "client", *_issue("mesh", signer, None))

    client, simple, mutual = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("payments-1", simple, 8443, tls=server)
    harness.backend("ledger-1", mutual, 8443, tls=(*server, ca_file))
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("payments", "shop", {"app": "payments"}, (8443,)),
        service("ledger", "shop", {"app": "ledger"}, (8443,)),
        pod("client", "shop", client, {"app": "client"}),
        pod("payments-1", "shop", simple, {"app": "payments"}, (8443,), inject=False),
        pod("ledger-1", "shop", mutual, {"app": "ledger"}, (8443,), inject=False),
    )
    await harness.start()
    # Plaintext to an HTTPS port: no answer from the app.
    r = await harness.get(client, "http://payments:8443/")
    assert r.served_by is None and r.status >= 500

    tls = {
        "mode": "SIMPLE",
        "caCertificates": ca_file,
        "sni": "payments.example",
        "subjectAltNames": ["payments.example"],
    }
    dr = {"host": "payments", "trafficPolicy": {"tls": tls}}
    await harness.apply("payments.yaml", istio("DestinationRule", "payments", "shop", dr))
    r = await harness.get(client, "http://payments:8443/")
    assert (r.status, r.served_by) == (200, "payments-1")

    # A SAN the certificate does not carry: the sidecar refuses the server.
    wrong = {"host": "payments", "trafficPolicy": {"tls": {**tls, "subjectAltNames": ["x.y"]}}}
    await harness.apply("payments.yaml", istio("DestinationRule", "payments", "shop", wrong))
    r = await harness.get(client, "http://payments:8443/")
    assert r.served_by is None and r.status == 503

    # The ledger requires a client certificate: SIMPLE is refused, MUTUAL answered.
    simple_to_ledger = {**tls, "sni": "payments.example"}
    dr = {"host": "ledger", "trafficPolicy": {"tls": simple_to_ledger}}
    await harness.apply("ledger.yaml", istio("DestinationRule", "ledger", "shop", dr))
    r = await harness.get(client, "http://ledger:8443/")
    assert r.served_by is None
    mutual_tls = {
        **simple_to_ledger,
        "mode": "MUTUAL",
        "clientCertificate": client_cert,
        "privateKey": client_key,
    }
    dr = {"host": "ledger", "trafficPolicy": {"tls": mutual_tls}}
    await harness.apply("ledger.yaml", istio("DestinationRule", "ledger", "shop", dr))
    r = await harness.get(client, "http://ledger:8443/")
    assert (r.status, r.served_by) == (200, "ledger-1")


async def test_tls_origination_for_an_external_service(harness: Harness, tmp_path: Path) -> None:
    """Istio's egress TLS origination: the app speaks plain HTTP to an external host on
    port 80; a ServiceEntry sends that port to the server's 443 (here a local port) and a
    DestinationRule makes the sidecar open TLS there, checking the server's name."""
    ca_key, ca_cert = _issue("test CA", None, None, ca=True)
    ca_file, _ = _write(tmp_path / "ca", ca_key, ca_cert)
    server = _write(tmp_path / "server", *_issue("news", (ca_key, ca_cert.subject), "news.test"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        https_port = s.getsockname()[1]
    harness.backend("news-origin", "127.0.0.1", https_port, tls=server)
    client = harness.ip(10)
    entry = {
        "hosts": ["news.test"],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": https_port}],
        "endpoints": [{"address": "localhost"}],
    }
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        istio("ServiceEntry", "news", "shop", entry),
    )
    await harness.start()
    # Plain HTTP to a TLS port: the origin does not answer it.
    r = await harness.get(client, "http://news.test/today")
    assert r.served_by is None and r.status >= 500
    tls = {"mode": "SIMPLE", "caCertificates": ca_file, "sni": "news.test"}
    port_tls = {"portLevelSettings": [{"port": {"number": 80}, "tls": tls}]}
    dr = {"host": "news.test", "trafficPolicy": port_tls}
    await harness.apply("news-dr.yaml", istio("DestinationRule", "news", "shop", dr))
    r = await harness.get(client, "http://news.test/today")
    assert (r.status, r.served_by) == (200, "news-origin")

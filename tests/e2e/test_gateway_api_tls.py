"""Gateway API TLS listeners through real Envoy in local mode: an HTTPS listener whose
certificateRef is a Secret of another namespace a ReferenceGrant allows; a TLS listener
in Terminate mode with a TCPRoute and a TLSRoute behind it."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from harness import Harness, namespace, pod, service
from test_gateway import _https_get, _leaf, _tls_secret
from test_gateway_api import GROUP, gateway_api

from pilotfish_operator.security import pki

pytestmark = pytest.mark.envoy


def edge_ca(tmp_path: Path) -> tuple[tuple[bytes, bytes], Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.new_ca(now, datetime.timedelta(days=1), pki.name("edge CA"))
    roots = tmp_path / "roots.pem"
    roots.write_bytes(ca[0])
    return ca, roots


def serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def secret_in(ns: str, name: str, cert: tuple[bytes, bytes]) -> dict[str, Any]:
    secret = _tls_secret(name, *cert)
    secret["metadata"] = {"name": name, "namespace": ns}
    return secret


async def test_a_certificate_of_another_namespace_granted(harness: Harness, tmp_path: Path) -> None:
    gw, web = harness.ip(160), harness.ip(161)
    ca, roots = edge_ca(tmp_path)
    cert = _leaf(ca, "www.example.com")
    harness.backend("web-1", web, 8080)
    labels = {f"{GROUP}/gateway-name": "edge", "pilotfish.io/proxy": "gateway"}
    listener = {
        "name": "https",
        "port": 8443,
        "protocol": "HTTPS",
        "tls": {"certificateRefs": [{"name": "www-cert", "namespace": "certs"}]},
    }
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("certs"),
        service("web", "shop", {"app": "web"}, (8080,)),
        pod("web-1", "shop", web, {"app": "web"}, (8080,)),
        pod("edge-gateway", "shop", gw, labels),
        secret_in("certs", "www-cert", cert),
        gateway_api(
            "ReferenceGrant",
            "gateways",
            "certs",
            {
                "from": [{"group": GROUP, "kind": "Gateway", "namespace": "shop"}],
                "to": [{"group": "", "kind": "Secret"}],
            },
            version="v1beta1",
        ),
        gateway_api(
            "Gateway", "edge", "shop", {"gatewayClassName": "pilotfish", "listeners": [listener]}
        ),
        gateway_api(
            "HTTPRoute",
            "www",
            "shop",
            {
                "parentRefs": [{"name": "edge"}],
                "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}],
            },
        ),
    )
    await harness.start()
    status, served, presented = await asyncio.to_thread(
        _https_get, f"{gw}:8443", "www.example.com", roots
    )
    assert (status, served, presented) == (200, "web-1", serial(cert[0]))


def tls_line(address: str, sni: str, roots: Path) -> tuple[str, str, int]:
    """A TLS connection to the gateway: (the backend's first line, the echo of `ping`,
    the serial of the certificate the gateway presented)."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(roots))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        stream = tls.makefile("rwb")
        first = stream.readline().decode().strip()
        stream.write(b"ping\n")
        stream.flush()
        echo = stream.readline().decode().strip()
    return first, echo, x509.load_der_x509_certificate(der).serial_number


async def test_tls_listeners_in_terminate_mode(harness: Harness, tmp_path: Path) -> None:
    gw, db, ledger = harness.ip(170), harness.ip(171), harness.ip(172)
    ca, roots = edge_ca(tmp_path)
    db_cert, ledger_cert = _leaf(ca, "db.example.com"), _leaf(ca, "ledger.example.com")
    harness.backend("db-1", db, 5432, tcp=True)
    harness.backend("ledger-1", ledger, 7000, tcp=True)  # plaintext: the gateway decrypts
    labels = {f"{GROUP}/gateway-name": "edge", "pilotfish.io/proxy": "gateway"}

    def listener(name: str, port: int) -> dict[str, Any]:
        return {
            "name": name,
            "port": port,
            "protocol": "TLS",
            "hostname": f"{name}.example.com",
            "tls": {"mode": "Terminate", "certificateRefs": [{"name": f"{name}-cert"}]},
        }

    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("db", "shop", {"app": "db"}, (5432,), protocol="tcp"),
        pod("db-1", "shop", db, {"app": "db"}, (5432,)),
        service("ledger", "shop", {"app": "ledger"}, (7000,), protocol="tcp"),
        pod("ledger-1", "shop", ledger, {"app": "ledger"}, (7000,)),
        pod("edge-gateway", "shop", gw, labels),
        secret_in("shop", "db-cert", db_cert),
        secret_in("shop", "ledger-cert", ledger_cert),
        gateway_api(
            "Gateway",
            "edge",
            "shop",
            {
                "gatewayClassName": "pilotfish",
                "listeners": [listener("db", 9433), listener("ledger", 9434)],
            },
        ),
        gateway_api(
            "TCPRoute",
            "db",
            "shop",
            {
                "parentRefs": [{"name": "edge", "sectionName": "db"}],
                "rules": [{"backendRefs": [{"name": "db", "port": 5432}]}],
            },
            version="v1alpha2",
        ),
        gateway_api(
            "TLSRoute",
            "ledger",
            "shop",
            {
                "parentRefs": [{"name": "edge", "sectionName": "ledger"}],
                "hostnames": ["ledger.example.com"],
                "rules": [{"backendRefs": [{"name": "ledger", "port": 7000}]}],
            },
            version="v1alpha2",
        ),
    )
    await harness.start()
    # The gateway presents the listener's certificate; the backend gets plain bytes.
    found = await asyncio.to_thread(tls_line, f"{gw}:9433", "db.example.com", roots)
    assert found == ("db-1", "ping", serial(db_cert[0]))
    found = await asyncio.to_thread(tls_line, f"{gw}:9434", "ledger.example.com", roots)
    assert found == ("ledger-1", "ping", serial(ledger_cert[0]))

"""Gateway API TLS listeners through real Envoy in local mode: an HTTPS listener whose
certificateRef is a Secret of another namespace a ReferenceGrant allows; a TLS listener
in Terminate mode with a TCPRoute and a TLSRoute behind it."""

from __future__ import annotations

import asyncio
import datetime
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

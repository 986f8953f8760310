"""The Kubernetes Gateway API through real Envoy in local mode, after the API's own
documented examples: a Gateway of class pilotfish served by the pod labelled with its
name; an HTTPRoute routing by path and by header, splitting by weight, adding a request
header the backend sees, and redirecting; HTTPS terminated with a certificateRef
Secret, a TLSRoute passed through by SNI, a TCPRoute; a GAMMA HTTPRoute (parentRef: a
Service) splitting mesh traffic between two versions of a service."""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from harness import Harness, namespace, pod, service
from test_gateway import _https_get, _leaf, _tls_secret

from pilotfish_operator.security import pki

pytestmark = pytest.mark.envoy

GROUP = "gateway.networking.k8s.io"
N = 400


def within(count: int, n: int, share: float) -> bool:
    """Within 5 standard deviations of the binomial mean."""
    return abs(count - n * share) <= 5 * math.sqrt(n * share * (1 - share))


def gateway_api(kind: str, name: str, ns: str, spec: dict[str, Any], version: str = "v1") -> Any:
    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def backends(harness: Harness) -> list[dict[str, Any]]:
    """Services foo-svc, bar-svc, bar-svc-canary (one echo pod each) in namespace shop."""
    objs: list[dict[str, Any]] = []
    for i, name in enumerate(("foo-svc", "bar-svc", "bar-svc-canary")):
        ip = harness.ip(110 + i)
        harness.backend(name, ip, 8080)
        objs.append(service(name, "shop", {"app": name}, (8080,)))
        objs.append(pod(name, "shop", ip, {"app": name}, (8080,)))
    return objs


async def test_http_route_at_the_gateway(harness: Harness) -> None:
    gw = harness.ip(100)
    labels = {f"{GROUP}/gateway-name": "web", "pilotfish.io/proxy": "gateway"}
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        *backends(harness),
        pod("web-gateway", "shop", gw, labels),
        gateway_api(
            "Gateway",
            "web",
            "shop",
            {
                "gatewayClassName": "pilotfish",
                "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}],
            },
        ),
        # "HTTP routing" (foo: by path; bar: canary by header) and "HTTP traffic splitting".
        gateway_api(
            "HTTPRoute",
            "foo-route",
            "shop",
            {
                "parentRefs": [{"name": "web"}],
                "hostnames": ["foo.example.com"],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/login"}}],
                        "backendRefs": [{"name": "foo-svc", "port": 8080}],
                    },
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
                        "filters": [
                            {
                                "type": "RequestRedirect",
                                "requestRedirect": {
                                    "hostname": "new.example.com",
                                    "statusCode": 301,
                                },
                            }
                        ],
                    },
                ],
            },
        ),
        gateway_api(
            "HTTPRoute",
            "bar-route",
            "shop",
            {
                "parentRefs": [{"name": "web"}],
                "hostnames": ["bar.example.com"],
                "rules": [
                    {
                        "matches": [{"headers": [{"name": "env", "value": "canary"}]}],
                        "filters": [
                            {
                                "type": "RequestHeaderModifier",
                                "requestHeaderModifier": {
                                    "add": [{"name": "my-header", "value": "foo"}]
                                },
                            }
                        ],
                        "backendRefs": [{"name": "bar-svc-canary", "port": 8080}],
                    },
                    {
                        "backendRefs": [
                            {"name": "bar-svc", "port": 8080, "weight": 90},
                            {"name": "bar-svc-canary", "port": 8080, "weight": 10},
                        ]
                    },
                ],
            },
        ),
    )
    await harness.start()
    state = json.loads((harness.workdir / "state.json").read_text())
    assert state["pods"]["shop/web-gateway"]["gateway"] == {"8080": f"{gw}:8080"}

    foo = {"host": "foo.example.com"}
    r = await harness.direct(f"{gw}:8080", "/login/form", foo)
    assert (r.status, r.served_by) == (200, "foo-svc")
    assert (await harness.direct(f"{gw}:8080", "/login", foo)).served_by == "foo-svc"
    # PathPrefix /login matches whole segments: /loginx is no match (404).
    assert (await harness.direct(f"{gw}:8080", "/loginx", foo)).status == 404
    r = await harness.direct(f"{gw}:8080", "/old/page", foo)
    assert (r.status, r.headers["location"]) == (301, "http://new.example.com/old/page")

    bar = {"host": "bar.example.com"}
    r = await harness.direct(f"{gw}:8080", "/", {**bar, "env": "canary"})
    assert r.served_by == "bar-svc-canary"
    assert r.json["headers"]["my-header"] == "foo"
    served: Counter[str | None] = Counter()
    for _ in range(N):
        r = await harness.direct(f"{gw}:8080", "/", bar)
        assert r.status == 200
        served[r.served_by] += 1
    assert set(served) == {"bar-svc", "bar-svc-canary"}
    assert within(served["bar-svc-canary"], N, 0.1), served
    assert "my-header" not in r.json["headers"]


async def test_gamma_route_splits_mesh_traffic(harness: Harness) -> None:
    client, v1, v2 = harness.ip(120), harness.ip(121), harness.ip(122)
    harness.backend("reviews-v1", v1, 9080)
    harness.backend("reviews-v2", v2, 9080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
        service("reviews-v1", "shop", {"app": "reviews", "version": "v1"}, (9080,)),
        service("reviews-v2", "shop", {"app": "reviews", "version": "v2"}, (9080,)),
        pod("reviews-v1", "shop", v1, {"app": "reviews", "version": "v1"}, (9080,)),
        pod("reviews-v2", "shop", v2, {"app": "reviews", "version": "v2"}, (9080,)),
        pod("productpage", "shop", client, {"app": "productpage"}),
        gateway_api(
            "HTTPRoute",
            "reviews",
            "shop",
            {
                "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "reviews-v1", "port": 9080, "weight": 80},
                            {"name": "reviews-v2", "port": 9080, "weight": 20},
                        ]
                    }
                ],
            },
        ),
    )
    await harness.start()
    served = await harness.split(client, "http://reviews.shop:9080/", N)
    assert set(served) == {"reviews-v1", "reviews-v2"}, served
    assert within(served["reviews-v2"], N, 0.2), served


async def test_https_tls_passthrough_and_tcp_listeners(harness: Harness, tmp_path: Path) -> None:
    gw, web, ledger, db = (harness.ip(i) for i in (130, 131, 132, 133))
    now = datetime.datetime.now(datetime.UTC)
    ca = pki.new_ca(now, datetime.timedelta(days=1), pki.name("edge CA"))
    roots = tmp_path / "roots.pem"
    roots.write_bytes(ca[0])
    edge = _leaf(ca, "www.example.com")
    own = _leaf(ca, "api.ledger.example")  # the ledger's own certificate
    (tmp_path / "ledger.pem").write_bytes(own[0])
    (tmp_path / "ledger.key").write_bytes(own[1])
    harness.backend("web-1", web, 8080)
    harness.backend(
        "ledger-1", ledger, 8443, tls=(str(tmp_path / "ledger.pem"), str(tmp_path / "ledger.key"))
    )
    harness.backend("db-1", db, 5432, tcp=True)
    labels = {f"{GROUP}/gateway-name": "edge", "pilotfish.io/proxy": "gateway"}
    all_namespaces = {"namespaces": {"from": "All"}}
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("ingress"),
        service("web", "shop", {"app": "web"}, (8080,)),
        pod("web-1", "shop", web, {"app": "web"}, (8080,)),
        service("ledger", "shop", {"app": "ledger"}, (8443,), protocol="tls"),
        pod("ledger-1", "shop", ledger, {"app": "ledger"}, (8443,), inject=False),
        service("db", "shop", {"app": "db"}, (5432,), protocol="tcp"),
        pod("db-1", "shop", db, {"app": "db"}, (5432,)),
        pod("edge-gateway", "ingress", gw, labels),
        _tls_secret("www-cert", *edge),
        gateway_api(
            "Gateway",
            "edge",
            "ingress",
            {
                "gatewayClassName": "istio",  # Istio's class name works too
                "listeners": [
                    {
                        "name": "https",
                        "port": 8443,
                        "protocol": "HTTPS",
                        "hostname": "www.example.com",
                        "tls": {"mode": "Terminate", "certificateRefs": [{"name": "www-cert"}]},
                        "allowedRoutes": all_namespaces,
                    },
                    {
                        "name": "tls",
                        "port": 9444,
                        "protocol": "TLS",
                        "tls": {"mode": "Passthrough"},
                        "allowedRoutes": all_namespaces,
                    },
                    {
                        "name": "db",
                        "port": 9400,
                        "protocol": "TCP",
                        "allowedRoutes": all_namespaces,
                    },
                ],
            },
        ),
        gateway_api(
            "HTTPRoute",
            "www",
            "shop",
            {
                "parentRefs": [{"name": "edge", "namespace": "ingress", "sectionName": "https"}],
                "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}],
            },
        ),
        gateway_api(
            "TLSRoute",
            "ledger",
            "shop",
            {
                "parentRefs": [{"name": "edge", "namespace": "ingress", "sectionName": "tls"}],
                "hostnames": ["api.ledger.example"],
                "rules": [{"backendRefs": [{"name": "ledger", "port": 8443}]}],
            },
            version="v1alpha2",
        ),
        gateway_api(
            "TCPRoute",
            "db",
            "shop",
            {
                "parentRefs": [{"name": "edge", "namespace": "ingress", "sectionName": "db"}],
                "rules": [{"backendRefs": [{"name": "db", "port": 5432}]}],
            },
            version="v1alpha2",
        ),
    )
    await harness.start()

    def serial(pem: bytes) -> int:
        return x509.load_pem_x509_certificate(pem).serial_number

    # HTTPS: terminated at the gateway with the Secret's certificate.
    status, served, presented = await asyncio.to_thread(
        _https_get, f"{gw}:8443", "www.example.com", roots
    )
    assert (status, served, presented) == (200, "web-1", serial(edge[0]))
    # TLS passthrough: the backend's own certificate comes back.
    status, served, presented = await asyncio.to_thread(
        _https_get, f"{gw}:9444", "api.ledger.example", roots
    )
    assert (status, served, presented) == (200, "ledger-1", serial(own[0]))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        await asyncio.to_thread(_https_get, f"{gw}:9444", "other.ledger.example", roots)
    # TCP: bytes to the route's backend.
    reader, writer = await asyncio.open_connection(gw, 9400)
    try:
        assert (await asyncio.wait_for(reader.readline(), 10)).strip() == b"db-1"
        writer.write(b"ping\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)) == b"ping\n"
    finally:
        writer.close()
        await writer.wait_closed()

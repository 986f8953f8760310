"""An ingress gateway through real Envoy in local mode: a pod labelled as a gateway
proxy gets an Envoy of its own listening on its address at its Gateways' ports;
VirtualServices bound to a Gateway route what enters there (the canary split at the
edge, a route for one gateway only), a host no server names gets 404, and the callee's
sidecar counts the gateway as the source."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from pathlib import Path

import pytest
from harness import Harness, istio, namespace, pod, series, service, total

pytestmark = pytest.mark.envoy

N = 400


def within(count: int, n: int, share: float) -> bool:
    """Within 5 standard deviations of the binomial mean."""
    return abs(count - n * share) <= 5 * math.sqrt(n * share * (1 - share))


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
        istio(
            "Gateway",
            "public",
            "ingress",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
                    {
                        "port": {"number": 8081, "name": "http-beta", "protocol": "HTTP"},
                        "hosts": ["shop/*.example.com"],
                    },
                ],
            },
        ),
        istio(
            "Gateway",
            "redirect",
            "ingress",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": 8082, "name": "http-redirect", "protocol": "HTTP"},
                        "hosts": ["*"],
                        "tls": {"httpsRedirect": True},
                    }
                ],
            },
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

"""Istio's standard HTTP metrics from stock Envoy, read from each sidecar's own
Prometheus endpoint: the client's sidecar reports (reporter=source) and the server's
(reporter=destination) count the same requests with Istio's labels, workloads named
as Istio names them (a ReplicaSet's pod by its Deployment)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from harness import Harness, namespace, pod, series, service, total

from pilotfish_operator import meshstats, top

pytestmark = pytest.mark.envoy

REVIEWS = "reviews.shop.svc.cluster.local"


def deployment_pod(name: str, ip: str, labels: dict[str, str], port: int, sa: str) -> Any:
    """A pod as a Deployment's ReplicaSet creates it."""
    obj = pod(f"{name}-7d4b9c-x2x8k", "shop", ip, labels, (port,), service_account=sa)
    obj["metadata"]["labels"]["pod-template-hash"] = "7d4b9c"
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": f"{name}-7d4b9c",
            "controller": True,
        }
    ]
    return obj


async def test_client_and_server_sidecars_report_istios_labels(harness: Harness) -> None:
    client, v1, plain = harness.ip(30), harness.ip(31), harness.ip(32)
    harness.backend("reviews-v1", v1, 9080)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
        deployment_pod(
            "productpage-v1",
            client,
            {"app": "productpage", "version": "v1"},
            9080,
            "bookinfo-productpage",
        ),
        deployment_pod(
            "reviews-v1", v1, {"app": "reviews", "version": "v1"}, 9080, "bookinfo-reviews"
        ),
        pod("curl", "shop", plain, {"app": "curl"}, inject=False),
    )
    await harness.start()
    for _ in range(3):
        r = await harness.get(client, "http://reviews.shop:9080/")
        assert (r.status, r.served_by) == (200, "reviews-v1")
    missing = await harness.get(client, "http://reviews.shop:9080/", {"x-backend-status": "503"})
    assert missing.status in (200, 503)
    # A client without a sidecar, straight to the server's sidecar (inbound port).
    r = await harness.direct(f"{v1}:15006", "/", {"host": f"{REVIEWS}:9080"})
    assert r.status == 200

    source = series(f"{client}:15000", "envoy_istio_requests_total")
    expected_source = {
        "reporter": "source",
        "source_workload": "productpage-v1",
        "source_workload_namespace": "shop",
        "source_app": "productpage",
        "source_version": "v1",
        "source_canonical_service": "productpage",
        "source_canonical_revision": "v1",
        "source_cluster": "Kubernetes",
        "destination_workload": "reviews-v1",
        "destination_workload_namespace": "shop",
        "destination_principal": "spiffe://cluster.local/ns/shop/sa/bookinfo-reviews",
        "destination_app": "reviews",
        "destination_version": "v1",
        "destination_service": REVIEWS,
        "destination_service_name": "reviews",
        "destination_service_namespace": "shop",
        "destination_canonical_service": "reviews",
        "destination_canonical_revision": "v1",
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "response_code": "200",
        "connection_security_policy": "unknown",
    }
    assert total(source, **expected_source) >= 3, source

    server = series(f"{v1}:15000", "envoy_istio_requests_total")
    expected_destination = {
        **expected_source,
        "reporter": "destination",
        "source_principal": "spiffe://cluster.local/ns/shop/sa/bookinfo-productpage",
        "connection_security_policy": "mutual_tls",
    }
    assert total(server, **expected_destination) >= 3, server
    # The plaintext client: nothing told the server who it is.
    assert (
        total(
            server,
            reporter="destination",
            source_workload="unknown",
            source_principal="unknown",
            destination_workload="reviews-v1",
            destination_service=REVIEWS,
            connection_security_policy="none",
            response_code="200",
        )
        == 1
    ), server
    # The app never sees the peer headers the sidecars exchange.
    r = await harness.get(client, "http://reviews.shop:9080/")
    assert not [h for h in r.json["headers"] if h.startswith("x-pilotfish-peer")]

    # Histograms reach the admin's view at Envoy's stats flush (every 5 s).
    for _ in range(100):
        durations = series(f"{client}:15000", "envoy_istio_request_duration_milliseconds_count")
        if total(durations, reporter="source", destination_workload="reviews-v1") >= 3:
            break
        await asyncio.sleep(0.2)
    assert total(durations, reporter="source", destination_workload="reviews-v1") >= 3
    sizes = series(f"{v1}:15000", "envoy_istio_response_bytes_bucket")
    assert {labels["le"] for labels, _ in sizes} >= {"10", "1000", "1000000000"}


async def test_tcp_connections_and_bytes_are_counted_on_both_sides(harness: Harness) -> None:
    client, db = harness.ip(40), harness.ip(41)
    harness.backend("db-1", db, 5432, tcp=True)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("db", "shop", {"app": "db"}, (5432,), protocol="tcp"),
        deployment_pod("api-v1", client, {"app": "api", "version": "v1"}, 8080, "api"),
        deployment_pod("db-v1", db, {"app": "db", "version": "v1"}, 5432, "db"),
    )
    await harness.start()
    for _ in range(2):
        reader, writer = await asyncio.open_connection(client, 5432)  # the client's sidecar
        assert (await asyncio.wait_for(reader.readline(), 10)).strip() == b"db-1"
        writer.write(b"ping\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 10) == b"ping\n"
        writer.close()
        await writer.wait_closed()

    labels = {
        "source_workload": "api-v1",
        "source_app": "api",
        "destination_workload": "db-v1",
        "destination_service": "db.shop.svc.cluster.local",
        "request_protocol": "tcp",
    }

    async def counted(admin: str, name: str, want: float, **match: str) -> float:
        for _ in range(100):  # the close is logged once both sides have shut down
            found = total(series(admin, name), **match)
            if found >= want:
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name} {match}: {series(admin, name)}")

    source = {**labels, "reporter": "source"}
    await counted(f"{client}:15000", "envoy_istio_tcp_connections_opened_total", 2, **source)
    await counted(f"{client}:15000", "envoy_istio_tcp_connections_closed_total", 2, **source)
    # Bytes the client sent (request) and got back (the greeting and the echo).
    sent = await counted(f"{client}:15000", "envoy_istio_tcp_received_bytes_total", 10, **source)
    assert sent == 10  # "ping\n" twice
    got = await counted(f"{client}:15000", "envoy_istio_tcp_sent_bytes_total", 20, **source)
    assert got == 2 * len(b"db-1\nping\n")
    # The server's sidecar: the client known by its certificate only (no headers on TCP).
    destination = {
        "reporter": "destination",
        "destination_workload": "db-v1",
        "source_principal": "spiffe://cluster.local/ns/shop/sa/api",
        "connection_security_policy": "mutual_tls",
        "request_protocol": "tcp",
    }
    await counted(f"{db}:15000", "envoy_istio_tcp_connections_closed_total", 2, **destination)


async def test_pilotfish_top_shows_success_rate_rps_and_latency(harness: Harness) -> None:
    client, web, api = harness.ip(50), harness.ip(51), harness.ip(52)
    harness.backend("web-1", web, 8080)
    # Half the answers fail with 500 (no retry policy retries a 500 by default).
    harness.backend("api-1", api, 8080, pattern=(200, 500))
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        service("api", "shop", {"app": "api"}, {80: 8080}),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-1", "shop", web, {"app": "web"}, (8080,)),
        pod("api-1", "shop", api, {"app": "api"}, (8080,)),
    )
    await harness.start()
    assert harness.mesh is not None and harness.mesh.state_path is not None
    admins = meshstats.sidecar_admins(json.loads(harness.mesh.state_path.read_text()))
    assert f"{web}:15000" in admins and f"{api}:15000" in admins

    # Envoy publishes histograms every 5 s: a window longer than that sees latencies.
    reading = asyncio.create_task(asyncio.to_thread(top.read, admins, 7.0))
    await asyncio.sleep(0.5)
    await harness.split(client, "http://web.shop/", 60)
    await harness.split(client, "http://api.shop/", 60)
    rows = {r.name: r for r in top.rows(await reading)}
    web_row, api_row = rows["web.shop.svc.cluster.local"], rows["api.shop.svc.cluster.local"]
    assert web_row.requests == 60 and web_row.success == 1.0
    assert api_row.requests == 60 and api_row.success == 0.5
    assert 60 / 7.5 <= web_row.rps <= 60 / 6.5
    assert web_row.p50 is not None and web_row.p99 is not None and web_row.p50 <= web_row.p99
    table = top.render(list(rows.values()))
    assert any(
        line.split()[:2] == ["api.shop.svc.cluster.local", "50.00%"] for line in table.splitlines()
    )

"""Which endpoints a service's traffic reaches, through real Envoy: readiness, pods
coming and going, and how injected and plain pods are reached."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


def ready(obj: dict[str, Any], is_ready: bool) -> dict[str, Any]:
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True" if is_ready else "False"}]
    return obj


def web(h: Harness, readiness: tuple[bool, ...], start: bool = True) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("client", "shop", h.ip(10), {"app": "client"}),
    ]
    for i, r in enumerate(readiness):
        if start:
            h.backend(f"web-{i}", h.ip(20 + i), 8080)
        objs.append(ready(pod(f"web-{i}", "shop", h.ip(20 + i), {"app": "web"}, (8080,)), r))
    return objs


async def test_unready_pod_gets_no_traffic_until_ready(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write("base.yaml", *web(harness, (True, True, False)))
    await harness.start()
    counts = await harness.split(client, "http://web/", 200)
    assert counts == {"web-0": 100, "web-1": 100}, counts

    await harness.apply("base.yaml", *web(harness, (True, True, True), start=False))
    counts = await harness.split(client, "http://web/", 300)
    assert sorted(counts) == ["web-0", "web-1", "web-2"], counts
    assert all(95 <= c <= 105 for c in counts.values()), counts

    await harness.apply("base.yaml", *web(harness, (False, True, True), start=False))
    counts = await harness.split(client, "http://web/", 200)
    assert counts == {"web-1": 100, "web-2": 100}, counts


async def test_mostly_unready_service_still_avoids_unready_pods(harness: Harness) -> None:
    """Kubernetes (and Istio) never send traffic to an unready pod, however few pods
    are ready; Envoy's default 50 % panic threshold would, unless it is turned off."""
    client = harness.ip(10)
    harness.write("base.yaml", *web(harness, (False, False, True)))
    await harness.start()
    counts = await harness.split(client, "http://web/", 60)
    assert counts == {"web-2": 60}, counts


async def test_no_ready_pod_means_503(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write("base.yaml", *web(harness, (False, False)))
    await harness.start()
    r = await harness.get(client, "http://web/")
    assert (r.status, r.served_by) == (503, None), (r.status, r.headers, r.body)


async def test_endpoints_follow_pods_added_and_removed(harness: Harness) -> None:
    client = harness.ip(10)
    for i in range(3):
        harness.backend(f"web-{i}", harness.ip(20 + i), 8080)
    base = [
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("client", "shop", client, {"app": "client"}),
    ]
    pods = [pod(f"web-{i}", "shop", harness.ip(20 + i), {"app": "web"}, (8080,)) for i in range(3)]
    harness.write("base.yaml", *base)
    harness.write("pods.yaml", *pods[:2])
    await harness.start()
    assert await harness.split(client, "http://web/", 100) == {"web-0": 50, "web-1": 50}

    await harness.apply("pods.yaml", *pods)
    counts = await harness.split(client, "http://web/", 300)
    assert sorted(counts) == ["web-0", "web-1", "web-2"], counts

    await harness.apply("pods.yaml", pods[1], pods[2])
    assert await harness.split(client, "http://web/", 50) == {"web-1": 25, "web-2": 25}

    # A pod whose labels stop matching the selector leaves the service.
    moved = pod("web-2", "shop", harness.ip(22), {"app": "other"}, (8080,))
    await harness.apply("pods.yaml", pods[1], moved)
    assert await harness.split(client, "http://web/", 50) == {"web-1": 50}


async def test_pod_deleted_and_recreated_is_served_once_synced(harness: Harness) -> None:
    """Once apply() reports every sidecar synced, the re-created pod's new sidecar
    must be serving: no request may fail on its not-yet-listening inbound port."""
    client = harness.ip(10)
    for i in range(2):
        harness.backend(f"web-{i}", harness.ip(20 + i), 8080)
    pods = [pod(f"web-{i}", "shop", harness.ip(20 + i), {"app": "web"}, (8080,)) for i in range(2)]
    harness.write(
        "base.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("client", "shop", client, {"app": "client"}),
    )
    harness.write("pods.yaml", *pods)
    await harness.start()
    await harness.apply("pods.yaml", pods[1])
    assert await harness.split(client, "http://web/", 20) == {"web-1": 20}
    await harness.apply("pods.yaml", *pods)
    statuses = [(await harness.get(client, "http://web/")).status for _ in range(20)]
    assert statuses == [200] * 20, statuses


def inbound_requests(ip: str) -> int:
    stats = urllib.request.urlopen(
        f"http://{ip}:15000/stats?filter=^http.inbound.downstream_rq_total$"
    )
    line = stats.read().decode().strip()
    assert line.startswith("http.inbound.downstream_rq_total: "), line
    return int(line.rsplit(" ", 1)[1])


async def test_injected_pods_are_reached_through_their_sidecar_plain_pods_directly(
    harness: Harness,
) -> None:
    client, meshed, plain = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("meshed", meshed, 8080)
    harness.backend("plain", plain, 8080)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        service("meshed", "shop", {"app": "meshed"}, {80: 8080}),
        service("plain", "shop", {"app": "plain"}, {80: 8080}),
        pod("meshed", "shop", meshed, {"app": "meshed"}, (8080,)),
        pod("plain", "shop", plain, {"app": "plain"}, (8080,), inject=False),
    )
    await harness.start()

    # The plain pod has no sidecar at all; the injected one has.
    with pytest.raises(ConnectionRefusedError):
        await harness.direct(f"{plain}:15006", "/")
    direct = await harness.direct(f"{meshed}:15006", "/", {"host": "meshed.shop"})
    assert direct.served_by == "meshed"
    assert "x-request-id" in direct.json["headers"]  # an Envoy handled it
    assert "x-request-id" not in (await harness.direct(f"{plain}:8080", "/")).json["headers"]

    before = await asyncio.to_thread(inbound_requests, meshed)
    for _ in range(5):
        r = await harness.get(client, "http://meshed/")
        assert r.served_by == "meshed"
        assert "x-request-id" in r.json["headers"]
    # Every mesh request to the injected pod went through its inbound sidecar.
    assert await asyncio.to_thread(inbound_requests, meshed) - before == 5

    for _ in range(5):
        r = await harness.get(client, "http://plain/")
        assert r.served_by == "plain"
        # Through the client's sidecar only.
        assert "x-request-id" in r.json["headers"]
        assert r.json["headers"]["host"] == "plain"


async def test_plain_client_namespace_gets_no_sidecar(harness: Harness) -> None:
    """A namespace without the injection label has no sidecars; a pod there that
    opts in with the pod label gets one."""
    opted, other = harness.ip(10), harness.ip(11)
    harness.backend("web", harness.ip(20), 8080)
    harness.write(
        "base.yaml",
        namespace("shop"),
        namespace("legacy", injected=False),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("web", "shop", harness.ip(20), {"app": "web"}, (8080,)),
        pod("opted-in", "legacy", opted, {"app": "x"}, inject=True),
        pod("plain", "legacy", other, {"app": "y"}),
        istio("DestinationRule", "web", "shop", {"host": "web"}),
    )
    await harness.start()
    assert (await harness.get(opted, "http://web.shop/")).served_by == "web"
    with pytest.raises(ConnectionRefusedError):
        await harness.get(other, "http://web.shop/")

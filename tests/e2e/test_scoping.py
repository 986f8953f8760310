"""Scoped sidecars (local mode's default; explicit here): a sidecar is sent no HTTP service
until its workload calls one, and that first call is answered correctly (Envoy's
on_demand filter fetches the virtual host over VHDS; its clusters come first)."""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.request
from typing import Any

import pytest
from harness import Harness, istio, mesh_config, namespace, pod, service

pytestmark = pytest.mark.envoy

WEB = "outbound|8080||web.shop.svc.cluster.local"
API = "outbound|8080||api.shop.svc.cluster.local"


def config(admin: str) -> tuple[set[str], set[str]]:
    """The clusters and the outbound virtual hosts' domains the sidecar holds."""
    url = f"http://{admin}/config_dump"
    dump: dict[str, Any] = json.loads(urllib.request.urlopen(url, timeout=10).read())
    clusters: set[str] = set()
    domains: set[str] = set()
    for part in dump["configs"]:
        for c in part.get("dynamic_active_clusters", []):
            clusters.add(c["cluster"]["name"])
        for r in part.get("dynamic_route_configs", []):
            rc = r["route_config"]
            if rc["name"] == "outbound":
                for vh in rc.get("virtual_hosts", []):
                    domains.update(vh["domains"])
    return clusters, domains


async def held(admin: str) -> tuple[set[str], set[str]]:
    return await asyncio.to_thread(config, admin)


def post(proxy: str, url: str, body: bytes) -> tuple[int, str]:
    host, port = proxy.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        conn.request("POST", url, body=body, headers={"host": url.split("/")[2]})
        r = conn.getresponse()
        r.read()
        return r.status, r.getheader("x-served-by") or ""
    finally:
        conn.close()


def objects(h: Harness) -> list[dict[str, Any]]:
    client, web, api = h.ip(10), h.ip(11), h.ip(12)
    return [
        namespace("shop"),
        service("web", "shop", {"app": "web"}, (8080,)),
        service("api", "shop", {"app": "api"}, (8080,)),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-1", "shop", web, {"app": "web"}, (8080,)),
        pod("api-1", "shop", api, {"app": "api"}, (8080,)),
    ]


def base(h: Harness) -> list[dict[str, Any]]:
    """Two HTTP services with a backend each, and a client."""
    h.backend("web-1", h.ip(11), 8080)
    h.backend("api-1", h.ip(12), 8080)
    return objects(h)


async def test_first_request_to_an_unfetched_service_is_answered(harness: Harness) -> None:
    harness.write("base.yaml", *base(harness))
    await harness.start(on_demand=True)
    client = harness.ip(10)
    admin = f"{client}:15000"

    clusters, domains = await held(admin)
    assert WEB not in clusters and API not in clusters, clusters
    assert not any(d.startswith(("web", "api")) for d in domains), domains

    r = await harness.get(client, "http://web:8080/")
    assert (r.status, r.served_by) == (200, "web-1")
    clusters, domains = await held(admin)
    assert WEB in clusters and "web:8080" in domains
    assert API not in clusters and "api:8080" not in domains, (clusters, domains)

    # Another name of the same service, then another service: each answered first time.
    r = await harness.get(client, "http://web.shop.svc.cluster.local:8080/")
    assert (r.status, r.served_by) == (200, "web-1")
    r = await harness.get(client, "http://api.shop:8080/")
    assert (r.status, r.served_by) == (200, "api-1")

    # A Host no service has: forwarded as without scoping (ALLOW_ANY; it does not
    # resolve here, so 503), not left waiting.
    r = await harness.get(client, "http://nowhere.shop:8080/")
    assert r.status == 503


async def test_first_request_with_a_body(harness: Harness) -> None:
    harness.write("base.yaml", *base(harness))
    await harness.start(on_demand=True)
    proxy = f"{harness.ip(10)}:15001"
    status, served = await asyncio.to_thread(post, proxy, "http://web:8080/", b"x" * 1_000_000)
    assert (status, served) == (200, "web-1")


async def test_edits_additions_and_removals_reach_scoped_sidecars(harness: Harness) -> None:
    harness.write("base.yaml", *base(harness))
    await harness.start(on_demand=True)
    client = harness.ip(10)
    admin = f"{client}:15000"
    assert (await harness.get(client, "http://web:8080/")).status == 200

    # An edit of a fetched service's VirtualService reaches the sidecar.
    vs = istio(
        "VirtualService",
        "web",
        "shop",
        {
            "hosts": ["web"],
            "http": [
                {
                    "headers": {"response": {"set": {"x-edited": "yes"}}},
                    "route": [{"destination": {"host": "web"}}],
                }
            ],
        },
    )
    await harness.apply("vs.yaml", vs)
    r = await harness.get(client, "http://web:8080/")
    assert (r.status, r.served_by, r.headers.get("x-edited")) == (200, "web-1", "yes")

    # A service added later: reachable on its first call.
    later = harness.ip(13)
    harness.backend("new-1", later, 8080)
    await harness.apply(
        "new.yaml",
        service("new", "shop", {"app": "new"}, (8080,)),
        pod("new-1", "shop", later, {"app": "new"}, (8080,)),
    )
    r = await harness.get(client, "http://new:8080/")
    assert (r.status, r.served_by) == (200, "new-1")

    # A removed service disappears from the sidecars that fetched it (its Host is now
    # one the mesh does not know, so what it gets is the unknown-host passthrough).
    harness.remove("vs.yaml")
    harness.write("base.yaml", *[o for o in objects(harness) if not _is_web(o)])
    await harness.synced()
    for _ in range(100):
        clusters, domains = await held(admin)
        if WEB not in clusters and "web.shop.svc.cluster.local:8080" not in domains:
            break
        await asyncio.sleep(0.1)
    assert WEB not in clusters, clusters
    assert "web.shop.svc.cluster.local:8080" not in domains, domains
    assert (await harness.get(client, "http://web:8080/")).status == 503  # unknown now
    assert (await harness.get(client, "http://new:8080/")).served_by == "new-1"


def _is_web(obj: dict[str, Any]) -> bool:
    return obj["kind"] in ("Service", "Pod") and obj["metadata"]["name"].startswith("web")


async def test_a_split_a_tcp_service_and_registry_only(harness: Harness) -> None:
    """A weighted split's clusters all come with the fetched host; a TCP service is
    sent from the start (nothing to fetch it by); under REGISTRY_ONLY an unknown Host
    gets Istio's 502 (a block_all host of its own: a catch-all would stop every fetch)."""
    client, v1, v2, db = harness.ip(10), harness.ip(11), harness.ip(12), harness.ip(13)
    harness.backend("web-v1", v1, 8080)
    harness.backend("web-v2", v2, 8080)
    harness.backend("db-1", db, 5432, tcp=True)
    subsets = [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]
    split = [
        {"destination": {"host": "web", "subset": "v1"}, "weight": 50},
        {"destination": {"host": "web", "subset": "v2"}, "weight": 50},
    ]
    harness.write(
        "base.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, (8080,)),
        service("db", "shop", {"app": "db"}, (5432,), protocol="tcp"),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-v1", "shop", v1, {"app": "web", "version": "v1"}, (8080,)),
        pod("web-v2", "shop", v2, {"app": "web", "version": "v2"}, (8080,)),
        pod("db-1", "shop", db, {"app": "db"}, (5432,), inject=False),
        istio("DestinationRule", "web", "shop", {"host": "web", "subsets": subsets}),
        istio("VirtualService", "web", "shop", {"hosts": ["web"], "http": [{"route": split}]}),
        mesh_config(outboundTrafficPolicy={"mode": "REGISTRY_ONLY"}),
    )
    await harness.start(on_demand=True)
    clusters, _ = await held(f"{client}:15000")
    assert "outbound|5432||db.shop.svc.cluster.local" in clusters
    assert not any("web" in c for c in clusters), clusters

    reader, writer = await asyncio.open_connection(client, 5432)
    assert (await asyncio.wait_for(reader.readline(), 10)).strip() == b"db-1"
    writer.close()

    counts = await harness.split(client, "http://web:8080/", 200)
    assert counts["web-v1"] + counts["web-v2"] == 200, counts
    assert 50 <= counts["web-v1"] <= 150, counts  # 50/50: > 7 sd from either bound

    assert (await harness.get(client, "http://elsewhere.example/")).status == 502
    assert (await harness.get(client, "http://web:8080/")).status == 200


async def test_a_hand_written_sidecar_narrows_what_can_be_fetched(harness: Harness) -> None:
    """A Sidecar importing only `web`: web is fetched on its first call; api, not
    imported, cannot be (it is an unknown Host to this sidecar: ALLOW_ANY forwards it,
    and the name does not resolve here, 503, as without scoping)."""
    egress = [{"hosts": ["./web.shop.svc.cluster.local"]}]
    sidecar = istio("Sidecar", "default", "shop", {"egress": egress})
    harness.write("base.yaml", *base(harness), sidecar)
    await harness.start(on_demand=True)
    client = harness.ip(10)
    r = await harness.get(client, "http://web:8080/")
    assert (r.status, r.served_by) == (200, "web-1")
    r = await harness.get(client, "http://api:8080/")
    assert (r.status, r.served_by) == (503, None)
    clusters, _ = await held(f"{client}:15000")
    assert WEB in clusters and API not in clusters, clusters


async def test_a_mirror_gets_copies_from_the_first_request(harness: Harness) -> None:
    """A fetched host's clusters include its mirror's (a request names only the route's
    own cluster, so fetching clusters by name on demand would never bring it)."""
    client, web, audit = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("web-1", web, 8080)
    harness.backend("audit-1", audit, 9000)
    http = [{"mirror": {"host": "audit"}, "route": [{"destination": {"host": "web"}}]}]
    harness.write(
        "base.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, (8080,)),
        service("audit", "shop", {"app": "audit"}, (9000,)),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-1", "shop", web, {"app": "web"}, (8080,), inject=False),
        pod("audit-1", "shop", audit, {"app": "audit"}, (9000,), inject=False),
        istio("VirtualService", "web", "shop", {"hosts": ["web"], "http": http}),
    )
    await harness.start(on_demand=True)
    for _ in range(5):
        r = await harness.get(client, "http://web:8080/")
        assert (r.status, r.served_by) == (200, "web-1")
    for _ in range(100):
        copies = (await harness.stats(f"{audit}:9000"))["requests"]
        if copies == 5:
            break
        await asyncio.sleep(0.05)
    assert copies == 5

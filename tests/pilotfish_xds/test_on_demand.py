"""On-demand discovery on a Delta stream: a scoped proxy's snapshot holds what it is
always sent plus a catalogue it fetches from (VHDS aliases, clusters by name)."""

from __future__ import annotations

import asyncio

import pytest
import yaml
from adsclient import DeltaClient, Running
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.route.v3 import VirtualHost
from test_server import poll

from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.codec import Encoded, decode, encode
from pilotfish_xds.debug import render_config
from pilotfish_xds.on_demand import Offer, OnDemand
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.types import CLUSTER, ENDPOINT, VIRTUAL_HOST

NODE = "client.shop"
DB, WEB, API = "outbound|5432||db", "outbound|80||web", "outbound|80||api"


def vhost(name: str, domains: list[str], tag: str = "") -> Encoded:
    return encode(name, VirtualHost(name=name, domains=domains, request_headers_to_remove=[tag]))


def fallback(host: str) -> Encoded:
    return vhost(f"80/{host}", [host], "passthrough")


def scoped(services: tuple[str, ...] = ("web", "api"), tag: str = "") -> Snapshot:
    """db (TCP) always sent; each HTTP service in the catalogue under route table `80`,
    found by `<name>` and `<name>:80`; `*.example.com` by its wildcard."""
    offers: dict[str, Offer] = {}
    clusters: dict[str, Encoded] = {}
    for s in services:
        cluster = f"outbound|80||{s}"
        clusters[cluster] = encode(cluster, Cluster(name=cluster, alt_stat_name=tag))
        offer = Offer(vhost(f"80/{s}", [s, f"{s}:80"], tag), (cluster,))
        offers[f"80/{s}"] = offers[f"80/{s}:80"] = offer
    offers["80/*.example.com"] = Offer(vhost("80/ext", ["*.example.com"]))
    endpoints = [encode(c, ClusterLoadAssignment(cluster_name=c)) for c in (DB, *clusters)]
    return Snapshot(
        {CLUSTER: [encode(DB, Cluster(name=DB))], ENDPOINT: endpoints},
        on_demand=OnDemand(clusters, offers, {"80": fallback}, ("80",)),
    )


def test_an_alias_resolves_by_domain_wildcard_then_fallback() -> None:
    catalogue = scoped().on_demand
    assert catalogue is not None
    found = catalogue.resolve("80/WEB:80")  # Host is case-insensitive
    assert found is not None and found.resource.name == "80/web" and found.clusters == (WEB,)
    wild = catalogue.resolve("80/a.b.example.com")
    assert wild is not None and wild.resource.name == "80/ext"
    unknown = catalogue.resolve("80/nowhere:80")
    assert unknown is not None and unknown.resource.name == "80/nowhere:80"
    assert unknown.clusters == ()
    assert catalogue.resolve("80") is None  # the table itself, not a Host
    assert catalogue.resolve("9090/web") is None  # no such table, no fallback


async def test_fetch_sends_clusters_first_then_the_virtual_host_with_its_alias(
    xds: Running,
) -> None:
    xds.cache.set(NODE, scoped())
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        clusters = await client.recv()
        assert [r.name for r in clusters.resources] == [DB]  # HTTP services wait
        await client.ack(clusters)

        # Envoy subscribes to VHDS without names; each table needs one answer to warm.
        await client.request(VIRTUAL_HOST)
        first = await client.recv()
        assert first.resources == [] and first.removed_resources == ["80/"]
        await client.ack(first)

        # The first request for web pauses; its cluster goes out before its host.
        await client.request(VIRTUAL_HOST, subscribe=["80/web:80"])
        sent = await client.recv()
        assert sent.type_url == CLUSTER
        assert [r.name for r in sent.resources] == [WEB]
        await client.expect_nothing()  # the virtual host waits for the cluster's ACK
        await client.ack(sent)
        fetched = await client.recv()
        assert fetched.type_url == VIRTUAL_HOST
        [resource] = fetched.resources
        assert (resource.name, resource.aliases) == ("80/web", ["80/web:80"])
        assert decode(VIRTUAL_HOST, resource.resource.value).domains == ["web", "web:80"]
        await client.ack(fetched)

        # Another name of the same host: sent again under that alias, no new cluster.
        await client.request(VIRTUAL_HOST, subscribe=["80/web"])
        again = await client.recv()
        assert again.type_url == VIRTUAL_HOST
        assert [(r.name, r.aliases) for r in again.resources] == [("80/web", ["80/web"])]
        await client.ack(again)


async def test_unknown_hosts_get_the_fallback_or_an_empty_resource(xds: Running) -> None:
    xds.cache.set(NODE, scoped())
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(VIRTUAL_HOST, subscribe=["80/nowhere:80", "9090/x"])
        response = await client.recv()
        by_name = {r.name: r for r in response.resources}
        # Route table 80 has a fallback (a passthrough host of its own)...
        passthrough = by_name["80/nowhere:80"]
        assert passthrough.aliases == ["80/nowhere:80"] and passthrough.resource is not None
        # ...9090 none: an empty resource under the alias, so Envoy resumes at once.
        empty = by_name["9090/x"]
        assert empty.aliases == ["9090/x"] and empty.resource is None


async def test_edits_and_removals_reach_what_was_fetched(xds: Running) -> None:
    xds.cache.set(NODE, scoped())
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        await client.ack(await client.recv())
        await client.request(VIRTUAL_HOST, subscribe=["80/web:80"])
        await client.ack(await client.recv())  # web's cluster
        await client.ack(await client.recv())  # web's virtual host

        # api changes (not fetched): only the version moves, nothing is sent of it.
        xds.cache.set(NODE, scoped(tag="v2"))
        cds = await client.recv()
        assert cds.type_url == CLUSTER and [r.name for r in cds.resources] == [WEB]
        await client.ack(cds)
        vhds = await client.recv()
        assert vhds.type_url == VIRTUAL_HOST and [r.name for r in vhds.resources] == ["80/web"]
        content = decode(VIRTUAL_HOST, vhds.resources[0].resource.value)
        assert content.request_headers_to_remove == ["v2"]
        await client.ack(vhds)

        # web is removed from the mesh: its host and its cluster leave the proxy.
        xds.cache.set(NODE, scoped(services=("api",), tag="v2"))
        cds = await client.recv()
        assert cds.type_url == CLUSTER and cds.removed_resources == [WEB]
        await client.ack(cds)
        vhds = await client.recv()
        assert vhds.type_url == VIRTUAL_HOST and vhds.removed_resources == ["80/web"]
        await client.ack(vhds)
        node = xds.status.get(NODE)
        assert node is not None
        snap = xds.cache.get(NODE)
        assert snap is not None
        await poll(lambda: node.types[VIRTUAL_HOST].acked_version == snap.version(VIRTUAL_HOST))


async def test_clusters_by_name(xds: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """On-demand CDS: a cluster named by the proxy is sent; an unknown name is not."""
    acks: list[str] = []
    acked = xds.status.acked

    def counted(node_id: str, type_url: str, version: str) -> None:
        acks.append(type_url)
        acked(node_id, type_url, version)

    monkeypatch.setattr(xds.status, "acked", counted)
    xds.cache.set(NODE, scoped())
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        await client.ack(await client.recv())
        await client.request(CLUSTER, subscribe=[API, "outbound|80||nowhere"])
        named = await client.recv()
        assert [r.name for r in named.resources] == [API]
        await client.ack(named)
        # Unsubscribed: the proxy drops it itself, and is sent no more of it.
        await client.request(CLUSTER, unsubscribe=[API])
        await client.ack(await client.recv())
        await poll(lambda: len(acks) == 3)  # read by the server: nothing is unanswered
        # The catalogue's clusters change; none it holds does: nothing is written to it
        # (an edit of a service a scoped proxy never fetched costs it nothing)...
        xds.cache.set(NODE, scoped(tag="v2"))
        await client.request(CLUSTER, subscribe=[API])
        # ...so the next response is the answer to its request, with the new cluster.
        after = await client.recv()
        assert after.type_url == CLUSTER and [r.name for r in after.resources] == [API]
        assert after.resources[0].resource != named.resources[0].resource


def test_proxy_config_lists_what_a_scoped_proxy_can_fetch() -> None:
    """`pilotfish proxy-config … routes`: a scoped proxy's tables hold no virtual host,
    so the catalogue's are listed (once each, however many domains find them)."""
    cache = SnapshotCache()
    cache.set(NODE, scoped())
    routes = yaml.safe_load(render_config(cache, NODE, "routes"))["routes"]
    names = [v["name"] for v in routes["onDemand"]["virtualHosts"]]
    assert names == ["80/api", "80/ext", "80/web"]
    cache.set(NODE, Snapshot({CLUSTER: [encode(DB, Cluster(name=DB))]}))
    assert "onDemand" not in yaml.safe_load(render_config(cache, NODE, "routes"))["routes"]


async def test_a_first_request_is_answered_even_with_nothing_to_send(xds: Running) -> None:
    """A scoped proxy that is always sent no cluster (REGISTRY_ONLY, every service HTTP)
    and asked before its snapshot existed still gets an answer, empty: Envoy waits for
    one before it asks for listeners."""
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        await asyncio.sleep(0.1)  # the request is owed: there is no snapshot yet
        empty = Snapshot({}, on_demand=OnDemand({}, {}, {}, ("80",)))
        xds.cache.set(NODE, empty)
        first = await asyncio.wait_for(client.recv(), 10)
        assert first.type_url == CLUSTER and first.resources == []

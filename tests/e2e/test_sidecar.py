"""The Sidecar kind through real Envoy (local mode): a namespace default narrowing what
its workloads import (the imported services answer, the others get the outbound
policy's answer, and the sidecar's Envoy really holds no cluster or endpoints of them),
a workload Sidecar overriding it with REGISTRY_ONLY, the mesh default from the root
namespace, an edit followed live, and an ingress listener sending a port to its
defaultEndpoint."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

REVIEWS = "outbound|9080||reviews.shop.svc.cluster.local"
PAYMENTS = "outbound|8080||payments.billing.svc.cluster.local"
INVENTORY = "outbound|7070||inventory.other.svc.cluster.local"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _sidecar(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    return istio("Sidecar", name, ns, spec)


def _envoy_clusters(ip: str) -> tuple[set[str], set[str]]:
    """(clusters, clusters with endpoints) in the sidecar's Envoy, from its config_dump."""
    url = f"http://{ip}:15000/config_dump?include_eds"
    with urllib.request.urlopen(url, timeout=10) as r:
        dump = json.loads(r.read())
    clusters, endpoints = set(), set()
    for config in dump["configs"]:
        for c in config.get("dynamic_active_clusters", ()):
            clusters.add(c["cluster"]["name"])
        for e in config.get("dynamic_endpoint_configs", ()):
            endpoints.add(e["endpoint_config"]["cluster_name"])
    return clusters, endpoints


async def _clusters(ip: str) -> tuple[set[str], set[str]]:
    return await asyncio.to_thread(_envoy_clusters, ip)


def _topology(harness: Harness) -> list[dict[str, Any]]:
    ips = {n: harness.ip(i) for i, n in enumerate(("client", "special", "payer", "outsider"), 10)}
    reviews, payments, inventory = harness.ip(20), harness.ip(21), harness.ip(22)
    harness.backend("reviews", reviews, 9080)
    harness.backend("payments", payments, 8080)
    harness.backend("inventory", inventory, 7070)
    return [
        namespace("shop"),
        namespace("billing"),
        namespace("other"),
        pod("client", "shop", ips["client"], {"app": "client"}),
        pod("special", "shop", ips["special"], {"app": "special"}),
        pod("payer", "billing", ips["payer"], {"app": "payer"}),
        pod("outsider", "other", ips["outsider"], {"app": "outsider"}),
        pod("reviews", "shop", reviews, {"app": "reviews"}, (9080,)),
        pod("payments", "billing", payments, {"app": "payments"}, (8080,)),
        pod("inventory", "other", inventory, {"app": "inventory"}, (7070,)),
        service("reviews", "shop", {"app": "reviews"}, (9080,)),
        service("payments", "billing", {"app": "payments"}, (8080,)),
        service("inventory", "other", {"app": "inventory"}, (7070,)),
    ]


async def test_sidecars_narrow_egress(harness: Harness) -> None:
    client, special, payer, outsider = (harness.ip(i) for i in (10, 11, 12, 13))
    shop_default = _sidecar(
        "default", "shop", egress=[{"hosts": ["./*", "billing/payments.billing.svc.cluster.local"]}]
    )
    outside = _free_port()  # a host the mesh does not know, resolvable (localhost)
    harness.backend("outside", "127.0.0.1", outside)
    harness.write("mesh.yaml", *_topology(harness))
    harness.write(
        "sidecars.yaml",
        shop_default,
        # A workload Sidecar wins over its namespace's default.
        {
            **_sidecar(
                "special",
                "shop",
                workloadSelector={"labels": {"app": "special"}},
                egress=[{"hosts": ["other/*"]}],
                outboundTrafficPolicy={"mode": "REGISTRY_ONLY"},
            ),
        },
        # The mesh default (root namespace): each workload sees its own namespace.
        _sidecar("default", "pilotfish-system", egress=[{"hosts": ["./*"]}]),
    )
    await harness.start()

    # The namespace default: its imports answer; anything else is unknown to the sidecar,
    # so ALLOW_ANY passes it through as the app would have sent it: a host DNS resolves
    # is reached, a mesh name outside the imports does not resolve here (503; in a
    # cluster its DNS name and cluster IP would take it there, as with Istio).
    for host, backend in (("reviews:9080", "reviews"), ("payments.billing:8080", "payments")):
        r = await harness.get(client, f"http://{host}/")
        assert (r.status, r.served_by) == (200, backend)
    r = await harness.get(client, "http://inventory.other:7070/")
    assert (r.status, r.served_by) == (503, None)
    r = await harness.get(client, f"http://localhost:{outside}/")
    assert (r.status, r.served_by) == (200, "outside")
    clusters, endpoints = await _clusters(client)
    assert {REVIEWS, PAYMENTS} <= clusters and {REVIEWS, PAYMENTS} <= endpoints
    assert INVENTORY not in clusters and INVENTORY not in endpoints

    # The workload Sidecar: only `other`, and REGISTRY_ONLY answers the rest with 502.
    r = await harness.get(special, "http://inventory.other:7070/")
    assert (r.status, r.served_by) == (200, "inventory")
    for host in ("reviews:9080", "payments.billing:8080", f"localhost:{outside}"):
        r = await harness.get(special, f"http://{host}/")
        assert (r.status, r.served_by) == (502, None), host
    clusters, endpoints = await _clusters(special)
    assert INVENTORY in clusters and clusters.isdisjoint({REVIEWS, PAYMENTS})
    assert endpoints.isdisjoint({REVIEWS, PAYMENTS})

    # The mesh default: billing's workloads see billing only; `other` sees other.
    r = await harness.get(payer, "http://payments.billing:8080/")
    assert (r.status, r.served_by) == (200, "payments")
    r = await harness.get(payer, "http://reviews.shop:9080/")
    assert (r.status, r.served_by) == (503, None)
    assert (await _clusters(payer))[0] & {REVIEWS, PAYMENTS, INVENTORY} == {PAYMENTS}
    r = await harness.get(outsider, "http://inventory:7070/")
    assert (r.status, r.served_by) == (200, "inventory")

    # An edit follows: the namespace default now imports `other` too.
    shop_default["spec"]["egress"][0]["hosts"].append("other/*")
    await harness.apply("sidecars.yaml", shop_default)
    r = await harness.get(client, "http://inventory.other:7070/")
    assert (r.status, r.served_by) == (200, "inventory")
    # ...and the workload Sidecar is gone: `special` follows the namespace default.
    r = await harness.get(special, "http://reviews:9080/")
    assert (r.status, r.served_by) == (200, "reviews")
    r = await harness.get(special, f"http://localhost:{outside}/")
    assert (r.status, r.served_by) == (200, "outside")  # the mesh config's ALLOW_ANY again
    # Without any Sidecar, every exported service is back: billing's workload reaches
    # what it could not before (a scoped sidecar holds a service once it is called).
    harness.remove("sidecars.yaml")
    await harness.synced()
    for host, backend in (("reviews.shop:9080", "reviews"), ("inventory.other:7070", "inventory")):
        r = await harness.get(payer, f"http://{host}/")
        assert (r.status, r.served_by) == (200, backend)
    assert {REVIEWS, PAYMENTS, INVENTORY} <= (await _clusters(payer))[0]


async def test_ingress_listener_sends_a_port_to_its_default_endpoint(harness: Harness) -> None:
    client, ratings = harness.ip(10), harness.ip(20)
    loopback = _free_port()
    harness.backend("ratings-app", ratings, 9080)
    harness.backend("ratings-loopback", "127.0.0.1", loopback)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        pod("ratings", "shop", ratings, {"app": "ratings"}, (9080,)),
        service("ratings", "shop", {"app": "ratings"}, (9080,)),
    )
    await harness.start()
    r = await harness.get(client, "http://ratings:9080/")
    assert (r.status, r.served_by) == (200, "ratings-app")

    def ingress(endpoint: str) -> dict[str, Any]:
        return _sidecar(
            "ratings",
            "shop",
            workloadSelector={"labels": {"app": "ratings"}},
            ingress=[
                {
                    "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                    "defaultEndpoint": endpoint,
                }
            ],
        )

    await harness.apply("sidecar.yaml", ingress(f"127.0.0.1:{loopback}"))
    for _ in range(3):
        r = await harness.get(client, "http://ratings:9080/")
        assert (r.status, r.served_by) == (200, "ratings-loopback")
    # 0.0.0.0 means the pod's own address.
    await harness.apply("sidecar.yaml", ingress("0.0.0.0:9080"))
    r = await harness.get(client, "http://ratings:9080/")
    assert (r.status, r.served_by) == (200, "ratings-app")

"""The operator end to end: objects into kmock's Kubernetes emulator, kopf watching
them, and what a sidecar gets over ADS; status and Events written back."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, REVIEWS, objects
from proxy_view import Proxy, ProxyConfig

from conftest import DR, VS, Start, create, wait_for

pytestmark = pytest.mark.kmock(cls=Emulator)

V1 = f"outbound|9080|v1|{REVIEWS}"
V2 = f"outbound|9080|v2|{REVIEWS}"
ALL = f"outbound|9080||{REVIEWS}"
EDS = [ALL, V1, V2]
DOMAIN = "reviews"
ROUTE = "9080"


def status(k8s: Any, resource: str, name: str) -> dict[str, Any]:
    return dict(k8s.objects[resource, NS, name].get("status") or {})


def accepted(k8s: Any, resource: str, name: str, generation: int) -> bool:
    s = status(k8s, resource, name)
    conditions = s.get("conditions") or [{}]
    return s.get("observedGeneration") == generation and conditions[0].get("status") == "True"


def events(k8s: Any) -> list[dict[str, Any]]:
    return [r.data for r in k8s["post", k8s.resource("v1/events")]]


def canary(c: ProxyConfig) -> bool:
    return ROUTE in c.routes and c.weights(ROUTE, DOMAIN) == {V1: 80, V2: 20}


async def test_cluster_objects_become_sidecar_config_with_status(
    k8s: Any, start_operator: Start
) -> None:
    objs = objects()
    for obj in objs[:6]:  # namespaces, node, account, services: seen by the first listing
        await create(k8s, obj)
    operator = await start_operator()
    for obj in objs[6:]:  # pods, endpoints, Istio config: seen as watch events
        await create(k8s, obj)
    await wait_for(lambda: accepted(k8s, VS, "reviews", 1), what="VirtualService Accepted")
    await wait_for(lambda: accepted(k8s, DR, "reviews", 1), what="DestinationRule Accepted")
    condition = status(k8s, VS, "reviews")["conditions"][0]
    assert (condition["type"], condition["reason"]) == ("Accepted", "Accepted")

    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, EDS) as proxy:
        config = await proxy.until(lambda c: canary(c) and V2 in c.endpoints, what="canary")
    assert {ALL, V1, V2} <= config.clusters
    # From the EndpointSlice: podIP:targetPort; the terminating endpoint stays, unhealthy.
    assert config.endpoints[V1] == [("10.0.1.1", 9080, "HEALTHY")]
    assert sorted(config.endpoints[V2]) == [
        ("10.0.1.2", 9080, "HEALTHY"),
        ("10.0.1.3", 9080, "UNHEALTHY"),
    ]
    assert len(config.endpoints[ALL]) == 3


async def test_invalid_object_is_marked_while_the_rest_keeps_flowing(
    k8s: Any, start_operator: Start
) -> None:
    for obj in objects():
        await create(k8s, obj)
    operator = await start_operator()
    await wait_for(lambda: accepted(k8s, VS, "reviews", 1), what="VirtualService Accepted")

    # An edit the validating webhook would refuse, written straight to the API.
    bad = {"spec": {"http": [{"route": [{"destination": {"host": "reviews"}, "weight": -5}]}]}}
    response = await k8s.patch(
        f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/reviews",
        json=bad,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 200, await response.text()

    def invalid() -> bool:
        s = status(k8s, VS, "reviews")
        conditions = s.get("conditions") or [{}]
        return s.get("observedGeneration") == 2 and conditions[0].get("reason") == "Invalid"

    await wait_for(invalid, what="VirtualService Invalid")
    s = status(k8s, VS, "reviews")
    condition = s["conditions"][0]
    assert (condition["type"], condition["status"]) == ("Accepted", "False")
    assert "spec.http[0].route[0].weight: must be >= 0" in condition["message"]
    assert s["invalidFields"] == [
        {"field": "spec.http[0].route[0].weight", "reason": "must be >= 0 (got -5)"}
    ]
    warnings = await wait_for(
        lambda: [e for e in events(k8s) if e.get("reason") == "Invalid"], what="an Event"
    )
    assert len(warnings) == 1
    assert warnings[0]["type"] == "Warning"
    assert warnings[0]["involvedObject"]["kind"] == "VirtualService"
    assert warnings[0]["involvedObject"]["name"] == "reviews"
    assert "spec.http[0].route[0].weight" in warnings[0]["message"]

    # Other changes keep flowing, and the rejected edit did not take the last good routes away.
    await create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ratings", "namespace": NS},
            "spec": {"selector": {"app": "ratings"}, "ports": [{"name": "http", "port": 9080}]},
        },
    )
    ratings = "outbound|9080||ratings.shop.svc.cluster.local"
    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, EDS) as proxy:
        config = await proxy.until(lambda c: ratings in c.clusters, what="the new service")
        # What Prometheus scrapes from the monitoring port says the same.
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{operator.monitoring_port}/metrics") as r,
        ):
            assert r.status == 200
            scraped = await r.text()
    assert canary(config)
    assert 'pilotfish_config_invalid_objects{kind="VirtualService"} 1.0' in scraped
    assert "pilotfish_xds_connected_proxies 1.0" in scraped
    assert "pilotfish_xds_nacks_total 0.0" in scraped
    # Istio's names for the same facts (its control-plane dashboard and Kiali read them).
    assert re.search(r'^pilot_xds\{version="[^"]+"\} 1\.0$', scraped, re.M)
    assert re.search(r'^pilot_xds_pushes\{type="cds"\} [1-9]', scraped, re.M)
    assert re.search(r'^pilot_xds_pushes\{type="rds"\} [1-9]', scraped, re.M)
    assert "pilot_services 3.0" in scraped and "pilot_virt_services 1.0" in scraped
    # This proxy acknowledged its configs: each is one convergence observed.
    converged = re.search(r"^pilot_proxy_convergence_time_count (\S+)$", scraped, re.M)
    assert converged and float(converged[1]) >= 1

    # Fixing the object makes it Accepted again, for the new generation.
    response = await k8s.patch(
        f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/reviews",
        json={"spec": {"http": [{"route": [{"destination": {"host": "reviews"}}]}]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 200
    await wait_for(lambda: accepted(k8s, VS, "reviews", 3), what="Accepted again")
    assert "invalidFields" not in status(k8s, VS, "reviews")


async def test_deleted_objects_disappear_from_envoy(k8s: Any, start_operator: Start) -> None:
    for obj in objects():
        await create(k8s, obj)
    operator = await start_operator()
    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, EDS) as proxy:
        await proxy.until(canary, what="canary")
        for plural in ("virtualservices", "destinationrules"):
            path = f"/apis/networking.istio.io/v1/namespaces/{NS}/{plural}/reviews"
            response = await k8s.delete(path)
            assert response.status == 200
        config = await proxy.until(
            lambda c: V1 not in c.clusters and c.weights(ROUTE, DOMAIN) == {ALL: 100},
            what="subsets and routing gone",
        )
        assert ALL in config.clusters


async def test_translation_warnings_are_shown_in_status(k8s: Any, start_operator: Start) -> None:
    for obj in objects():
        await create(k8s, obj)
    await start_operator()
    await wait_for(lambda: accepted(k8s, VS, "reviews", 1), what="VirtualService Accepted")
    assert "warnings" not in status(k8s, VS, "reviews")

    # A route after one that takes every request: accepted, and the status says so.
    route = {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
    response = await k8s.patch(
        f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/reviews",
        json={"spec": {"http": [route, {"match": [{"uri": {"prefix": "/v2"}}], **route}]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 200
    s = await wait_for(
        lambda: (st := status(k8s, VS, "reviews")).get("warnings") and st, what="warnings"
    )
    assert s["warnings"] == [
        "spec.http[1] is never used: spec.http[0] takes every request before it"
    ]
    assert s["conditions"][0]["status"] == "True"

    # Fixed: the warnings go.
    response = await k8s.patch(
        f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/reviews",
        json={"spec": {"http": [route]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 200
    await wait_for(
        lambda: accepted(k8s, VS, "reviews", 3) and "warnings" not in status(k8s, VS, "reviews"),
        what="warnings cleared",
    )

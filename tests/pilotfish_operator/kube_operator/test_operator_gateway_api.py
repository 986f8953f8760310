"""Gateway API status in a cluster: an HTTPRoute attached to a Gateway of class
pilotfish gets `status.parents` Accepted and ResolvedRefs; a missing backend is
ResolvedRefs False BackendNotFound; a backend in another namespace is refused
(RefNotPermitted) until a ReferenceGrant there allows it. The Gateway gets Accepted,
its listener the number of attached routes."""

from __future__ import annotations

from typing import Any

import pytest
from kube_emulator import Emulator
from mesh_objects import NS, objects

from conftest import Start, create, wait_for

pytestmark = pytest.mark.kmock(cls=Emulator)

GROUP = "gateway.networking.k8s.io"
ROUTES = f"{GROUP}/v1/httproutes"
GATEWAYS = f"{GROUP}/v1/gateways"


def http_route(name: str, backend: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "web"}],
            "hostnames": [f"{name}.example.com"],
            "rules": [{"backendRefs": [backend]}],
        },
    }


def conditions(k8s: Any, resource: str, name: str) -> dict[str, tuple[str, str]]:
    """The first parent's (or the object's own) conditions: type → (status, reason)."""
    obj = k8s.objects[resource, NS, name]
    status = dict((obj or {}).get("status") or {})
    parents = status.get("parents") or [status]
    return {c["type"]: (c["status"], c["reason"]) for c in parents[0].get("conditions") or []}


@pytest.mark.timeout(120)
async def test_route_status_follows_backends_and_reference_grants(
    k8s: Any, start_operator: Start
) -> None:
    for obj in objects():
        await create(k8s, obj)
    await create(k8s, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "backend"}})
    await create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ratings", "namespace": "backend"},
            "spec": {"selector": {"app": "ratings"}, "ports": [{"name": "http", "port": 9080}]},
        },
    )
    await create(
        k8s,
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Gateway",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "gatewayClassName": "pilotfish",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
    )
    await create(k8s, http_route("ok", {"name": "reviews", "port": 9080}))
    await create(k8s, http_route("missing", {"name": "nosuch", "port": 80}))
    await create(
        k8s, http_route("cross", {"name": "ratings", "namespace": "backend", "port": 9080})
    )
    await start_operator()

    accepted = ("True", "Accepted")
    await wait_for(
        lambda: (
            conditions(k8s, ROUTES, "ok")
            == {"Accepted": accepted, "ResolvedRefs": ("True", "ResolvedRefs")}
        ),
        what="route ok: Accepted, ResolvedRefs",
    )
    await wait_for(
        lambda: (
            conditions(k8s, ROUTES, "missing")
            == {"Accepted": accepted, "ResolvedRefs": ("False", "BackendNotFound")}
        ),
        what="route missing: BackendNotFound",
    )
    await wait_for(
        lambda: (
            conditions(k8s, ROUTES, "cross")
            == {"Accepted": accepted, "ResolvedRefs": ("False", "RefNotPermitted")}
        ),
        what="route cross: RefNotPermitted",
    )
    parent = k8s.objects[ROUTES, NS, "ok"]["status"]["parents"][0]
    assert parent["controllerName"] == "pilotfish.io/gateway-controller"
    assert parent["parentRef"]["name"] == "web"
    assert all("lastTransitionTime" in c for c in parent["conditions"])

    await create(
        k8s,
        {
            "apiVersion": f"{GROUP}/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": "from-shop", "namespace": "backend"},
            "spec": {
                "from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": NS}],
                "to": [{"group": "", "kind": "Service"}],
            },
        },
    )
    await wait_for(
        lambda: (
            conditions(k8s, ROUTES, "cross")
            == {"Accepted": accepted, "ResolvedRefs": ("True", "ResolvedRefs")}
        ),
        what="route cross: allowed by the ReferenceGrant",
    )
    gateway = k8s.objects[GATEWAYS, NS, "web"]["status"]
    assert {c["type"]: c["status"] for c in gateway["conditions"]}["Accepted"] == "True"
    assert gateway["listeners"][0]["attachedRoutes"] == 3

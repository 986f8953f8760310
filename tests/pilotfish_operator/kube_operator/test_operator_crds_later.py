"""Istio's CRDs installed after the operator started are picked up (issue 12): kopf
watches the CRDs (which the chart's RBAC now grants), discovers the new kinds and
starts watching them; until then the operator does not serve a partial view."""

from __future__ import annotations

from typing import Any

import pytest
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, objects
from proxy_view import Proxy
from test_operator_e2e import ALL, EDS, ROUTE, V1, V2, accepted, canary

from conftest import DR, VS, Start, _istio_kind, create, wait_for

pytestmark = pytest.mark.kmock(cls=Emulator)


def crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.networking.istio.io"},
        "spec": {
            "group": "networking.istio.io",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }


@pytest.mark.timeout(120)
async def test_crds_installed_after_start_are_picked_up(k8s: Any, start_operator: Start) -> None:
    del k8s.resources[VS], k8s.resources[DR]  # the API server does not serve them yet
    istio = [o for o in objects() if o["apiVersion"].startswith("networking.istio.io")]
    for obj in objects():
        if obj not in istio:
            await create(k8s, obj)
    operator = await start_operator()
    await wait_for(lambda: operator.not_ready() is not None, what="started, not ready")

    k8s.resources[VS] = _istio_kind("VirtualService", "virtualservices", "vs")
    k8s.resources[DR] = _istio_kind("DestinationRule", "destinationrules", "dr")
    for kind, plural in (
        ("VirtualService", "virtualservices"),
        ("DestinationRule", "destinationrules"),
    ):
        response = await k8s.post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd(kind, plural)
        )
        assert response.status == 200, await response.text()
    for obj in istio:
        await create(k8s, obj)
    await wait_for(lambda: operator.not_ready() is None, within=60, what="every kind listed")
    await wait_for(lambda: accepted(k8s, VS, "reviews", 1), what="VirtualService Accepted")
    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, EDS) as proxy:
        config = await proxy.until(canary, what="canary routing")
    assert {ALL, V1, V2} <= config.clusters
    assert ROUTE in config.routes

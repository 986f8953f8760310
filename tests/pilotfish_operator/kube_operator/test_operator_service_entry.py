"""ServiceEntry and WorkloadEntry in a cluster (kmock's emulator, kopf): an external host
and a VM's WorkloadEntry become clusters and endpoints a sidecar gets over ADS, both
objects are marked Accepted, and deleting the entry takes its cluster away."""

from __future__ import annotations

from typing import Any

import pytest
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, objects
from proxy_view import Proxy

from conftest import Start, create, wait_for

pytestmark = pytest.mark.kmock(cls=Emulator)

ENTRIES = "networking.istio.io/v1/serviceentries"
WORKLOADS = "networking.istio.io/v1/workloadentries"
API = "outbound|443||api.example.com"
LEGACY = "outbound|8080||legacy.shop.internal"


def _accepted(k8s: Any, resource: str, name: str) -> bool:
    s = dict(k8s.objects[resource, NS, name].get("status") or {})
    conditions = s.get("conditions") or [{}]
    return conditions[0].get("status") == "True"


async def test_entries_become_clusters_and_endpoints(k8s: Any, start_operator: Start) -> None:
    for obj in objects():
        await create(k8s, obj)
    api = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "api", "namespace": NS},
        "spec": {
            "hosts": ["api.example.com"],
            "location": "MESH_EXTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "endpoints": [{"address": "203.0.113.7"}],
        },
    }
    legacy = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "legacy", "namespace": NS},
        "spec": {
            "hosts": ["legacy.shop.internal"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": 8080, "name": "http", "protocol": "HTTP"}],
            "workloadSelector": {"labels": {"app": "legacy"}},
        },
    }
    vm = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": "vm-1", "namespace": NS},
        "spec": {"address": "10.9.0.5", "labels": {"app": "legacy"}},
    }
    for obj in (api, legacy, vm):
        await create(k8s, obj)
    operator = await start_operator()
    for resource, name in ((ENTRIES, "api"), (ENTRIES, "legacy"), (WORKLOADS, "vm-1")):
        await wait_for(lambda r=resource, n=name: _accepted(k8s, r, n), what=f"{name} Accepted")

    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, [API, LEGACY]) as proxy:
        config = await proxy.until(
            lambda c: API in c.endpoints and LEGACY in c.endpoints, what="the entries"
        )
        assert config.endpoints[API] == [("203.0.113.7", 443, "HEALTHY")]
        assert config.endpoints[LEGACY] == [("10.9.0.5", 8080, "HEALTHY")]

        response = await k8s.delete(
            f"/apis/{ENTRIES.removesuffix('/serviceentries')}/namespaces/{NS}/serviceentries/api"
        )
        assert response.status == 200, await response.text()
        config = await proxy.until(lambda c: API not in c.clusters, what="api removed")
        assert LEGACY in config.clusters

"""The Sidecar kind in a cluster (kmock's emulator, kopf): a namespace default Sidecar
narrows what a sidecar gets over ADS, its status says Accepted, and an edit follows."""

from __future__ import annotations

from typing import Any

import pytest
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, REVIEWS, objects
from proxy_view import Proxy

from conftest import Start, create, wait_for

pytestmark = pytest.mark.kmock(cls=Emulator)

SIDECARS = "networking.istio.io/v1/sidecars"
REVIEWS_ALL = f"outbound|9080||{REVIEWS}"
PRODUCTPAGE = f"outbound|9080||productpage.{NS}.svc.cluster.local"


def _accepted(k8s: Any, generation: int) -> bool:
    s = dict(k8s.objects[SIDECARS, NS, "default"].get("status") or {})
    conditions = s.get("conditions") or [{}]
    return s.get("observedGeneration") == generation and conditions[0].get("status") == "True"


async def test_namespace_default_sidecar_scopes_proxies(k8s: Any, start_operator: Start) -> None:
    for obj in objects():
        await create(k8s, obj)
    sidecar = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": NS},
        "spec": {"egress": [{"hosts": [f"./{REVIEWS}"]}]},
    }
    await create(k8s, sidecar)
    operator = await start_operator()
    await wait_for(lambda: _accepted(k8s, 1), what="Sidecar Accepted")

    address = f"127.0.0.1:{operator.xds_port}"
    async with Proxy(address, CLIENT_NODE, [REVIEWS_ALL, PRODUCTPAGE]) as proxy:
        config = await proxy.until(lambda c: REVIEWS_ALL in c.endpoints, what="reviews")
        assert REVIEWS_ALL in config.clusters and PRODUCTPAGE not in config.clusters
        assert PRODUCTPAGE not in config.endpoints

        # An edit follows: the whole namespace imported, productpage comes back.
        response = await k8s.patch(
            f"/apis/{SIDECARS.removesuffix('/sidecars')}/namespaces/{NS}/sidecars/default",
            json={"spec": {"egress": [{"hosts": ["./*"]}]}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.status == 200, await response.text()
        config = await proxy.until(
            lambda c: PRODUCTPAGE in c.clusters and PRODUCTPAGE in c.endpoints,
            what="productpage after the edit",
        )
        assert REVIEWS_ALL in config.clusters
    await wait_for(lambda: _accepted(k8s, 2), what="Sidecar Accepted for the edit")

"""Shapes a real API server sends that a hand-written fixture tends not to (issue 12):
an EndpointSlice whose endpoints and ports are `null` once a Service selects no pods."""

from __future__ import annotations

from typing import Any

import pytest
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, REVIEWS, objects
from proxy_view import Proxy

from conftest import Start, create

pytestmark = pytest.mark.kmock(cls=Emulator)

ALL = f"outbound|9080||{REVIEWS}"
SLICE = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices/reviews-abcde"


async def test_an_emptied_endpoint_slice_empties_the_cluster(
    k8s: Any, start_operator: Start
) -> None:
    for obj in objects():
        await create(k8s, obj)
    operator = await start_operator()
    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, [ALL]) as proxy:
        await proxy.until(lambda c: len(c.endpoints.get(ALL, [])) == 3, what="3 endpoints")
        # The Service's selector now matches no pod: the endpoint controller writes the
        # slice back with null lists, exactly as the API server serialises it.
        current = await (await k8s.get(SLICE)).json()
        emptied = {**current, "endpoints": None, "ports": None}
        response = await k8s.put(SLICE, json=emptied)
        assert response.status == 200, await response.text()
        config = await proxy.until(lambda c: c.endpoints.get(ALL) == [], what="no endpoints")
    assert ALL in config.clusters
    assert not operator.store.errors()

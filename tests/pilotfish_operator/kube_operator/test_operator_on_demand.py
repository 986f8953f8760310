"""Scoped sidecars, the operator's default (Settings.on_demand): a sidecar on Delta xDS
is sent no HTTP service until it asks for one by Host (VHDS); then the service's
clusters come first and its virtual host with the alias it asked by. (A State of the
World sidecar is sent everything: every other test here reads full snapshots over SotW
from an operator with the default.)"""

from __future__ import annotations

from typing import Any

import pytest
from adsclient import DeltaClient
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, REVIEWS, objects

from conftest import VS, Start, create, wait_for
from pilotfish_xds.codec import decode
from pilotfish_xds.types import CLUSTER, VIRTUAL_HOST

pytestmark = pytest.mark.kmock(cls=Emulator)

V1, V2 = f"outbound|9080|v1|{REVIEWS}", f"outbound|9080|v2|{REVIEWS}"


async def test_a_scoped_sidecar_fetches_a_service_by_host(k8s: Any, start_operator: Start) -> None:
    for obj in objects():
        await create(k8s, obj)
    operator = await start_operator()  # scoped: the default
    await wait_for(lambda: k8s.objects[VS, "shop", "reviews"].get("status"), what="VS status")

    async with DeltaClient(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE) as client:
        await client.request(CLUSTER)
        first = await client.recv(15)
        assert not {r.name for r in first.resources} & {V1, V2}
        await client.ack(first)

        await client.request(VIRTUAL_HOST, subscribe=["9080/reviews:9080"])
        clusters = await client.recv(15)
        assert clusters.type_url == CLUSTER
        assert {V1, V2} <= {r.name for r in clusters.resources}  # the 80/20 split's
        await client.ack(clusters)
        fetched = await client.recv(15)
        while fetched.type_url != VIRTUAL_HOST:  # another type's version may move first
            await client.ack(fetched)
            fetched = await client.recv(15)
        [vhost] = fetched.resources
        assert vhost.aliases == ["9080/reviews:9080"]
        assert "reviews:9080" in decode(VIRTUAL_HOST, vhost.resource.value).domains

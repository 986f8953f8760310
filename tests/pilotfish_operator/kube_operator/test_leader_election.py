"""Only the leader writes status; leadership moves through a Lease."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes
import pytest
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, REVIEWS, objects
from proxy_view import Proxy

from conftest import VS, Start, create, wait_for
from pilotfish_operator.kube.client import KubeClient
from pilotfish_operator.kube.leader import LEASE_NAME, LeaderElector

pytestmark = pytest.mark.kmock(cls=Emulator)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/pilotfish-system/leases"


def client(k8s: Any) -> KubeClient:
    cfg = kubernetes.client.Configuration()
    cfg.host = str(k8s.url).rstrip("/")
    return KubeClient(cfg)


async def test_one_replica_leads_and_the_other_takes_over_on_release(k8s: Any) -> None:
    api = client(k8s)
    a = LeaderElector(api, "pilotfish-system", identity="a", lease_duration=30)
    b = LeaderElector(api, "pilotfish-system", identity="b", lease_duration=30)
    try:
        assert await a.step() is True
        assert await b.step() is False
        assert await a.step() is True  # renewing keeps it
        lease = k8s.objects["coordination.k8s.io/v1/leases", "pilotfish-system", LEASE_NAME]
        assert lease["spec"]["holderIdentity"] == "a"
        await a.release()
        assert a.is_leader is False
        assert await b.step() is True
        assert await a.step() is False
    finally:
        await api.close()


async def test_an_expired_lease_is_taken_over(k8s: Any) -> None:
    api = client(k8s)
    now = [0.0]
    a = LeaderElector(api, "pilotfish-system", identity="a", lease_duration=10)
    b = LeaderElector(api, "pilotfish-system", identity="b", clock=lambda: now[0])
    try:
        assert await a.step() is True
        assert await b.step() is False
        now[0] = 9.0
        assert await b.step() is False  # a's lease may still be live
        now[0] = 11.0
        assert await b.step() is True  # a stopped renewing: b takes over
        lease = k8s.objects["coordination.k8s.io/v1/leases", "pilotfish-system", LEASE_NAME]
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1
    finally:
        await api.close()


async def test_a_replica_that_does_not_lead_serves_xds_but_writes_no_status(
    k8s: Any, start_operator: Start
) -> None:
    for obj in objects():
        await create(k8s, obj)
    response = await k8s.post(
        LEASES,
        json={
            "metadata": {"name": LEASE_NAME, "namespace": "pilotfish-system"},
            "spec": {"holderIdentity": "another-replica", "leaseDurationSeconds": 3600},
        },
    )
    assert response.status == 200
    operator = await start_operator()
    v1 = f"outbound|9080|v1|{REVIEWS}"
    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, [v1]) as proxy:
        await proxy.until(lambda c: v1 in c.clusters, what="config from a non-leader")
    await asyncio.sleep(1.0)  # several election rounds and status wake-ups
    assert not operator.elector.is_leader
    assert "status" not in k8s.objects[VS, NS, "reviews"]
    assert not [r for r in k8s["patch"] if r.subresource == "status"]

    # The other replica lets go: this one takes over and catches up on status.
    response = await k8s.patch(
        f"{LEASES}/{LEASE_NAME}",
        json={"spec": {"holderIdentity": "", "leaseDurationSeconds": 1}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 200
    await wait_for(
        lambda: (k8s.objects[VS, NS, "reviews"].get("status") or {}).get("observedGeneration") == 1,
        what="status written by the new leader",
    )
    assert operator.elector.is_leader

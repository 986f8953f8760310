"""Endpoint churn through the real pipeline and ADS server: a burst of EndpointSlice
writes (a rollout, bench/churn.py at full size) reaches a connected proxy as one or two
endpoint responses carrying the final endpoints, and its clusters are not sent again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from adsclient import DeltaClient, Running, SotwClient
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment

from pilotfish_operator.pipeline import Pipeline
from pilotfish_operator.store import Store
from pilotfish_operator.translate import Options
from pilotfish_xds.types import CLUSTER, ENDPOINT

NODE = "client.ns"
WEB = "outbound|8080||web.ns.svc.cluster.local"
BURST = 20
"""EndpointSlice writes, 5 ms apart: the whole burst within the 100 ms quiet window."""


def endpoint_slice(ips: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-1",
            "namespace": "ns",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
    }


def mesh() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "ns", "labels": {"mesh-injection": "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": "ns", "labels": {"app": "client"}},
            "status": {"podIP": "127.0.0.2"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]},
        },
        endpoint_slice([f"10.0.0.{k}" for k in range(1, 4)]),
    ]


@pytest.fixture
async def pipeline(xds: Running) -> AsyncIterator[tuple[Store, Pipeline]]:
    store = Store()
    for obj in mesh():
        store.apply(obj)
    # The defaults (100 ms quiet, 1 s at most) are what is under test.
    pipe = Pipeline(store, xds.cache, Options(local=False), status=xds.status)
    task = asyncio.create_task(pipe.run())
    try:
        yield store, pipe
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def addresses(resources: list[Any]) -> list[str]:
    out = []
    for resource in resources:
        cla = ClusterLoadAssignment.parse(resource.value)
        assert cla.cluster_name == WEB
        for locality in cla.endpoints:
            for lb in locality.lb_endpoints:
                out.append(lb.endpoint.address.socket_address.address)
    return sorted(out)


async def burst(store: Store) -> list[str]:
    """A rolling replacement of the three endpoints, one write per pod change, as an
    endpoint controller writes them; the final addresses."""
    ips = [f"10.0.0.{k}" for k in range(1, 4)]
    for k in range(BURST):
        ips = [*ips[1:], f"10.0.1.{k}"] if k % 2 else [*ips, f"10.0.1.{k}"]
        store.apply(endpoint_slice(ips))
        await asyncio.sleep(0.005)
    return sorted(ips)


async def test_a_burst_of_endpoint_changes_is_one_or_two_pushes_over_sotw(
    xds: Running, pipeline: tuple[Store, Pipeline]
) -> None:
    store, _ = pipeline
    async with SotwClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        clusters = await client.recv()
        assert clusters.type_url == CLUSTER
        await client.ack(clusters)
        await client.request(ENDPOINT, [WEB])
        endpoints = await client.recv()
        await client.ack(endpoints, [WEB])
        assert addresses(endpoints.resources) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]

        final = await burst(store)
        pushed: list[Any] = []
        # Everything the burst causes arrives within the 1 s bound (plus a rebuild).
        with contextlib.suppress(TimeoutError):
            while True:
                response = await client.recv(wait=2.5)
                pushed.append(response)
                await client.ack(response, [WEB] if response.type_url == ENDPOINT else [])
    assert [r.type_url for r in pushed] in ([ENDPOINT], [ENDPOINT, ENDPOINT])
    assert addresses(pushed[-1].resources) == final


async def test_a_burst_of_endpoint_changes_is_one_or_two_pushes_over_delta(
    xds: Running, pipeline: tuple[Store, Pipeline]
) -> None:
    store, _ = pipeline
    async with DeltaClient(xds.address, NODE) as client:
        await client.request(CLUSTER)
        clusters = await client.recv()
        assert clusters.type_url == CLUSTER
        await client.ack(clusters)
        await client.request(ENDPOINT, subscribe=[WEB])
        endpoints = await client.recv()
        await client.ack(endpoints)

        final = await burst(store)
        pushed: list[Any] = []
        with contextlib.suppress(TimeoutError):
            while True:
                response = await client.recv(wait=2.5)
                pushed.append(response)
                await client.ack(response)
    assert [r.type_url for r in pushed] in ([ENDPOINT], [ENDPOINT, ENDPOINT])
    assert [r.name for r in pushed[-1].resources] == [WEB]
    assert addresses([r.resource for r in pushed[-1].resources]) == final

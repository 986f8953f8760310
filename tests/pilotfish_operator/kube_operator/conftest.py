"""Fixtures for the operator against kmock's Kubernetes emulator (see kube_emulator.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import kmock
import kubernetes
import pytest

# The in-process ADS client lives with the xDS tests; share it rather than copy it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pilotfish_xds"))

from pilotfish_operator.api.kinds import SPECS
from pilotfish_operator.kube.runner import Operator, Settings

VS = "networking.istio.io/v1/virtualservices"
DR = "networking.istio.io/v1/destinationrules"


def _istio_kind(kind: str, plural: str, shorts: tuple[str, ...], namespaced: bool = True) -> Any:
    return kmock.ResourceInfo(
        kind=kind,
        singular=kind.lower(),
        namespaced=namespaced,
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        shortnames=set(shorts),
        subresources={"status"},
    )


@pytest.fixture
def k8s(kmock: Any) -> Any:
    kmock.resources.load_bundled()
    # The Istio kinds the operator owns and the Gateway API's, as their CRDs declare them.
    for spec in SPECS:
        if spec.owned or spec.crd_if_absent:
            kmock.resources[f"{spec.group}/{spec.versions[0]}/{spec.plural}"] = _istio_kind(
                spec.api_kind,
                spec.plural,
                spec.short_names,
                spec.namespaced,
            )
    return kmock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(check: Callable[[], Any], within: float = 15.0, what: str = "") -> Any:
    """Poll while the loop (which also serves the emulator) keeps running."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


async def create(k8s: Any, obj: dict[str, Any]) -> dict[str, Any]:
    api = obj["apiVersion"]
    base = f"/apis/{api}" if "/" in api else f"/api/{api}"
    plural = {
        "Namespace": "namespaces",
        "Node": "nodes",
        "Service": "services",
        "Pod": "pods",
        "ServiceAccount": "serviceaccounts",
        "Secret": "secrets",
        "EndpointSlice": "endpointslices",
        "VirtualService": "virtualservices",
        "DestinationRule": "destinationrules",
        "ConfigMap": "configmaps",
        "Telemetry": "telemetries",
        "Gateway": "gateways",
        "HTTPRoute": "httproutes",
        "ReferenceGrant": "referencegrants",
        "Sidecar": "sidecars",
        "ServiceEntry": "serviceentries",
        "WorkloadEntry": "workloadentries",
    }[obj["kind"]]
    ns = obj["metadata"].get("namespace")
    url = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
    response = await k8s.post(url, json=obj)
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


Start = Callable[..., Awaitable[Operator]]


@pytest.fixture
async def start_operator(k8s: Any) -> AsyncIterator[Start]:
    """Start operators (replicas) against the emulator; all are stopped at the end."""
    running: list[tuple[Operator, asyncio.Event, asyncio.Task[None]]] = []
    # kmock's client keeps one connection alive; open it before anything else runs.
    await k8s.get("/version")

    async def start(
        xds_port: int = 0, cfg: kubernetes.client.Configuration | None = None, **settings: Any
    ) -> Operator:
        if cfg is None:
            cfg = kubernetes.client.Configuration()
            cfg.host = str(k8s.url).rstrip("/")
        defaults: dict[str, Any] = {
            "xds": f"127.0.0.1:{xds_port}",
            "monitoring": "127.0.0.1:0",
            "lease_duration": 3.0,
            "renew_deadline": 2.0,
            "retry_period": 0.2,
            "debounce": 0.05,
            # Plaintext xDS unless a test asks for security (test_operator_security.py).
            "security": False,
        }
        operator = Operator(cfg, Settings(**{**defaults, **settings}))
        stop = asyncio.Event()
        task = asyncio.create_task(operator.run(stop))
        running.append((operator, stop, task))
        await wait_for(lambda: operator.started.is_set() or task.done(), what="operator start")
        if task.done():
            task.result()
        return operator

    async def stop_one(operator: Operator) -> None:
        for op, stop, task in running:
            if op is operator:
                stop.set()
                await asyncio.wait_for(task, 30)

    start.stop = stop_one  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for _, stop, _ in running:
            stop.set()
        for _, _, task in running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)

"""A Gateway API Gateway that no pod serves, in local mode: local mode runs a gateway
pod for it (`<gateway>-<class>`, the state file names its address), which serves the
Gateway's HTTPRoute through real Envoy; a pod of the config labelled with the
Gateway's name takes over, and the made-up one goes."""

from __future__ import annotations

import asyncio
import json

import pytest
from harness import Harness, namespace, pod
from test_gateway_api import GROUP, backends, gateway_api

pytestmark = pytest.mark.envoy


async def test_a_gateway_without_pods_gets_one(harness: Harness) -> None:
    listener = {"name": "http", "port": 8080, "protocol": "HTTP"}
    objects = [
        namespace("shop"),
        *backends(harness),
        gateway_api(
            "Gateway", "web", "shop", {"gatewayClassName": "pilotfish", "listeners": [listener]}
        ),
        gateway_api(
            "HTTPRoute",
            "foo",
            "shop",
            {
                "parentRefs": [{"name": "web"}],
                "rules": [{"backendRefs": [{"name": "foo-svc", "port": 8080}]}],
            },
        ),
    ]
    harness.write("mesh.yaml", *objects)
    await harness.start()
    made_up = harness.ip(254)
    state = json.loads((harness.workdir / "state.json").read_text())
    entry = state["pods"]["shop/web-pilotfish"]
    assert (entry["ip"], entry["gateway"]) == (made_up, {"8080": f"{made_up}:8080"})
    r = await harness.direct(f"{made_up}:8080", "/", {"host": "foo.example.com"})
    assert (r.status, r.served_by) == (200, "foo-svc")

    # The user's own gateway pod: it serves the Gateway, the made-up one is gone.
    own = harness.ip(100)
    labels = {f"{GROUP}/gateway-name": "web", "pilotfish.io/proxy": "gateway"}
    await harness.apply("mesh.yaml", *objects, pod("web-gateway", "shop", own, labels))
    for _ in range(200):  # the state file is rewritten just after the sync
        state = json.loads((harness.workdir / "state.json").read_text())
        if "shop/web-pilotfish" not in state["pods"]:
            break
        await asyncio.sleep(0.05)
    assert "shop/web-pilotfish" not in state["pods"], state["pods"]
    assert "gateway" in state["pods"]["shop/web-gateway"]
    r = await harness.direct(f"{own}:8080", "/", {"host": "foo.example.com"})
    assert (r.status, r.served_by) == (200, "foo-svc")

"""Telemetry in a cluster: the operator watches telemetry.istio.io objects and reads the
mesh config's tracing providers; a namespace's Telemetry turns tracing and access logs
on for its sidecars, is marked Accepted, and an edit reaches the connected proxy."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, REVIEWS, objects
from proxy_view import Proxy

from conftest import Start, create, wait_for
from pilotfish_operator.kube import mesh_config as mesh_config_reader
from pilotfish_xds.debug import render_config

pytestmark = pytest.mark.kmock(cls=Emulator)

TELEMETRY = "telemetry.istio.io/v1/telemetries"


def telemetry(sampling: float) -> dict[str, Any]:
    return {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "shop", "namespace": NS},
        "spec": {
            "tracing": [{"providers": [{"name": "zipkin"}], "randomSamplingPercentage": sampling}],
            "accessLogging": [{"providers": [{"name": "envoy"}]}],
        },
    }


@pytest.mark.timeout(120)
async def test_a_namespace_telemetry_reaches_its_sidecars(
    k8s: Any, start_operator: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mesh_config_reader, "EVERY", 0.1)
    for obj in objects():
        await create(k8s, obj)
    mesh = {
        "extensionProviders": [{"name": "zipkin", "zipkin": {"service": REVIEWS, "port": 9080}}]
    }
    await create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "pilotfish-mesh", "namespace": "pilotfish-system"},
            "data": {"mesh": yaml.safe_dump(mesh)},
        },
    )
    await create(k8s, telemetry(25))
    operator = await start_operator()

    def listeners() -> str:
        if operator.cache.get(CLIENT_NODE) is None:
            return ""
        return render_config(operator.cache, CLIENT_NODE, "listeners")

    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, []) as proxy:
        await proxy.until(lambda c: bool(c.listeners), what="listeners")
        text = await wait_for(
            lambda: (t := listeners()) and "envoy.tracers.zipkin" in t and t, what="the tracer"
        )
        assert f"collectorCluster: outbound|9080||{REVIEWS}" in text
        assert "value: 25.0" in text
        assert "envoy.access_loggers.file" in text and "path: /dev/stdout" in text

        def accepted() -> bool:
            found = k8s.objects[TELEMETRY, NS, "shop"].get("status") or {}
            conditions = found.get("conditions") or [{}]
            return conditions[0].get("type") == "Accepted" and conditions[0]["status"] == "True"

        await wait_for(accepted, what="Telemetry Accepted")

        # An edit: the new sampling reaches the proxy.
        url = f"/apis/{TELEMETRY}".replace("/telemetries", f"/namespaces/{NS}/telemetries/shop")
        current = k8s.objects[TELEMETRY, NS, "shop"]
        edited = telemetry(75)
        edited["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
        response = await k8s.put(url, json=edited)
        assert response.status == 200, await response.text()
        await wait_for(lambda: "value: 75.0" in listeners(), what="the new sampling")

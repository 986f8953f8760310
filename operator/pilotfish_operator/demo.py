"""`pilotfish demo` / `make demo`: a canary rollout through real Envoy, measured live.

A client pod and two versions of a `web` service run in local mode, each pod
with its own Envoy sidecar. The demo rewrites the VirtualService 90/10 → 50/50 →
0/100, waits until every sidecar has acknowledged the change, then sends real
requests from a separate process and prints who answered; the same VirtualService binds
an ingress gateway, and requests from outside through it see the same split. The dashboard (local
mode's monitoring server) shows it live; `--hold` keeps the mesh up afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from .local.runner import LocalMesh

NS = "demo"
CLIENT_IP = "127.0.10.10"
BACKENDS = {"v1": "127.0.10.11", "v2": "127.0.10.12"}
GATEWAY_IP = "127.0.10.20"
"""The ingress gateway pod: its Envoy serves the Gateway `edge` on this address."""
PORT = 8080
STEPS = ((90, 10), (50, 50), (0, 100))
MONITORING = "127.0.0.1:15014"
DWELL = 20.0
"""With --hold, seconds each split keeps light traffic before the next (the dashboard
shows rates over 10 s)."""


def _pod(name: str, ip: str, labels: dict[str, str], port: int | None) -> dict[str, object]:
    container: dict[str, object] = {"name": "app", "image": "demo"}
    if port:
        container["ports"] = [{"containerPort": port, "name": "http"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [container]},
        "status": {"podIP": ip, "phase": "Running"},
    }


def mesh_objects() -> list[dict[str, object]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "labels": {"mesh-injection": "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
            },
        },
        _pod("client", CLIENT_IP, {"app": "client"}, None),
        _pod(
            "ingressgateway",
            GATEWAY_IP,
            {"istio": "ingressgateway", "pilotfish.io/proxy": "gateway"},
            None,
        ),
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": NS},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {"port": {"number": PORT, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
                ],
            },
        },
        *(_pod(f"web-{v}", ip, {"app": "web", "version": v}, PORT) for v, ip in BACKENDS.items()),
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "host": "web",
                "subsets": [{"name": v, "labels": {"version": v}} for v in BACKENDS],
            },
        },
    ]


def virtual_service(v1: int, v2: int) -> dict[str, object]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "hosts": ["web"],
            "gateways": ["mesh", "edge"],  # the sidecars and the ingress gateway
            "http": [
                {
                    "route": [
                        {"destination": {"host": "web", "subset": "v1"}, "weight": v1},
                        {"destination": {"host": "web", "subset": "v2"}, "weight": v2},
                    ]
                }
            ],
        },
    }


def _bar(count: int, total: int, width: int = 40) -> str:
    return "█" * round(width * count / total) if total else ""


def _within(count: int, n: int, share: float) -> bool:
    """Binomial bounds: 5 standard deviations, so an honest split never fails."""
    sd = math.sqrt(n * share * (1 - share))
    return abs(count - n * share) <= 5 * sd + 1


def _load(n: int) -> dict[str, int]:
    return _load_from(CLIENT_IP, f"http://web.{NS}:{PORT}/", n, {})


def _load_ingress(n: int) -> dict[str, int]:
    """n requests from outside the mesh, into the ingress gateway (Host: web)."""
    return _load_from(CLIENT_IP, "http://web/", n, {}, proxy=f"{GATEWAY_IP}:{PORT}")


def _load_from(
    client: str,
    url: str,
    n: int,
    headers: dict[str, str],
    by_status: bool = False,
    proxy: str | None = None,
) -> dict[str, int]:
    """n requests through `client`'s sidecar (or `proxy`) from a separate process: per
    backend (or status, when no backend answered), how many."""
    via = proxy or f"{client}:15001"
    args = [sys.executable, "-m", "pilotfish_operator.local.load", "--proxy", via]
    args += ["--url", url, "-n", str(n)]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    args += ["--by-status"] * by_status
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=300)
    counts: dict[str, int] = json.loads(out.stdout)
    return counts


async def apply(mesh: LocalMesh, config: Path, name: str, *objects: dict[str, Any]) -> float:
    """Write one file of the demo's config; once every sidecar acknowledged the
    result, how long that took (ms)."""
    before = mesh.store.generation
    t0 = time.monotonic()
    (config / name).write_text(yaml.safe_dump_all(list(objects)))
    await asyncio.wait_for(mesh.wait_synced(after=before), 60)
    return (time.monotonic() - t0) * 1e3


async def in_local_mesh(
    workdir: Path,
    objects: list[dict[str, Any]],
    envoy: str | None,
    scenes: Callable[[LocalMesh, Path], Awaitable[bool]],
) -> bool:
    """Run `scenes` against a local mesh of `objects` (real Envoy sidecars), stopped
    afterwards whatever happens."""
    config = workdir / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(yaml.safe_dump_all(objects))
    mesh = LocalMesh(config, envoy=envoy, workdir=workdir)
    ready = asyncio.Event()
    task = asyncio.create_task(mesh.run(ready))
    try:
        t0 = time.monotonic()
        await asyncio.wait_for(ready.wait(), 60)
        count = len(mesh.pipeline.mesh.proxies)
        print(f"mesh up: {count} Envoy sidecars in sync after {time.monotonic() - t0:.2f} s\n")
        return await scenes(mesh, config)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _trickle(seconds: float) -> None:
    """Light traffic, client → web, for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.to_thread(_load, 20)
        await asyncio.sleep(1)


def _monitoring_address() -> str:
    """The control plane's usual monitoring port when free (a URL worth bookmarking),
    else any."""
    host, port = MONITORING.rsplit(":", 1)
    with socket.socket() as s:
        try:
            s.bind((host, int(port)))
        except OSError:
            return f"{host}:0"
    return MONITORING


async def _demo(
    workdir: Path, requests: int, envoy: str | None, hold: bool, result: dict[str, bool]
) -> None:
    config = workdir / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(yaml.safe_dump_all(mesh_objects()))
    vs_file = config / "virtualservice.yaml"
    vs_file.write_text(yaml.safe_dump(virtual_service(*STEPS[0])))

    mesh = LocalMesh(
        config,
        envoy=envoy,
        workdir=workdir,
        state=workdir / "state.json",  # for `pilotfish top --state` while it runs
        monitoring=_monitoring_address(),
    )
    ready = asyncio.Event()
    task = asyncio.create_task(mesh.run(ready))
    ok = True
    try:
        t0 = time.monotonic()
        await asyncio.wait_for(ready.wait(), 60)
        print(
            f"mesh up: 3 Envoy sidecars and an ingress gateway in sync after "
            f"{time.monotonic() - t0:.2f} s"
        )
        print(f"dashboard: http://{mesh.monitoring}/dashboard (live while the demo runs)")
        print(
            f"traffic: client → web ({requests} requests per step, through Envoy), and "
            f"{requests // 2} from outside through the ingress gateway at {GATEWAY_IP}:{PORT}\n"
        )
        for step, (v1, v2) in enumerate(STEPS):
            if step:
                before = mesh.store.generation
                t0 = time.monotonic()
                vs_file.write_text(yaml.safe_dump(virtual_service(v1, v2)))
                await mesh.wait_synced(after=before)
                print(
                    f"  edit applied and acknowledged by every sidecar in "
                    f"{(time.monotonic() - t0) * 1e3:.0f} ms"
                )
            counts = await asyncio.to_thread(_load, requests)
            print(f"VirtualService web: v1 {v1}% / v2 {v2}%")
            for version, share in (("v1", v1), ("v2", v2)):
                got = counts.get(f"web-{version}", 0)
                good = _within(got, requests, share / 100)
                ok &= good
                print(
                    f"  {version}: {got:5d} {_bar(got, requests):40s} "
                    f"{'ok' if good else 'OUT OF BOUNDS'}"
                )
            others = {k: v for k, v in counts.items() if not k.startswith("web-")}
            if others:
                ok = False
                print(f"  other answers: {others}")
            # The same VirtualService binds the gateway: the edge sees the same split.
            edge_n = requests // 2
            edge = await asyncio.to_thread(_load_ingress, edge_n)
            good = all(
                _within(edge.get(f"web-{v}", 0), edge_n, share / 100)
                for v, share in (("v1", v1), ("v2", v2))
            ) and set(edge) <= {"web-v1", "web-v2"}
            ok &= good
            print(
                f"  through the ingress gateway: v1 {edge.get('web-v1', 0)}, "
                f"v2 {edge.get('web-v2', 0)} of {edge_n} {'ok' if good else 'OUT OF BOUNDS'}"
            )
            print(flush=True)
            if hold and step < len(STEPS) - 1:
                await _trickle(DWELL)  # time to watch this split on the dashboard
        result["ok"] = ok
        print(
            "canary walked 90/10 → 50/50 → 0/100: "
            + ("all splits within bounds" if ok else "FAILED"),
            flush=True,
        )
        if hold:
            print(
                f"holding the mesh up, client → web at ~20 requests/s; dashboard: "
                f"http://{mesh.monitoring}/dashboard; state: {mesh.state_path}; Ctrl-C stops",
                flush=True,
            )
            await _trickle(math.inf)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def run_demo(requests: int = 400, envoy: str | None = None, hold: bool = False) -> int:
    result = {"ok": False}
    if hold:  # stopped by a service manager or `timeout` as by Ctrl-C: everything cleaned up
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="pilotfish-demo-") as tmp:
        workdir = Path(tmp)
        backends = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pilotfish_operator.local.echo",
                    "--name",
                    f"web-{v}",
                    "--listen",
                    f"{ip}:{PORT}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for v, ip in BACKENDS.items()
        ]
        try:
            for b in backends:
                assert b.stdout is not None
                b.stdout.readline()  # "ready"
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_demo(workdir, requests, envoy, hold, result))
        finally:
            for b in backends:
                b.terminate()
                b.wait()
    return 0 if result["ok"] else 1

"""What mesh mTLS costs a request, through real Envoy in local mode.

One client sidecar, one server sidecar in front of an echo backend, requests from
this process through the client's sidecar (its HTTP proxy port). Measured, with
mTLS (Istio's default, auto mTLS) and with it off (DestinationRule `tls.mode:
DISABLE` and a PERMISSIVE server, so the same path is plaintext):

- kept-alive connections between the sidecars: the added per-request latency
  (medians and p99 of `--requests` sequential requests);
- a new connection per request (`maxRequestsPerConnection: 1` between the
  sidecars): what a TLS handshake adds to each request;
- the server sidecar's handshake count, to show what each run did.

    python bench/mtls.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from pilotfish_operator.local.runner import LocalMesh

SUBNET = "127.0.77"
CLIENT, SERVER = f"{SUBNET}.10", f"{SUBNET}.11"


def _objects() -> list[dict[str, Any]]:
    ns = {"apiVersion": "v1", "kind": "Namespace"}
    return [
        {**ns, "metadata": {"name": "bench", "labels": {"mesh-injection": "enabled"}}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "bench"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
        _pod("client", CLIENT, {"app": "client"}, None),
        _pod("web", SERVER, {"app": "web"}, 8080),
    ]


def _pod(name: str, ip: str, labels: dict[str, str], port: int | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app"}
    if port:
        container["ports"] = [{"containerPort": port}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "bench", "labels": labels},
        "spec": {"containers": [container]},
        "status": {"podIP": ip, "phase": "Running"},
    }


def _rule(mtls: bool, new_connections: bool) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if not mtls:
        policy["tls"] = {"mode": "DISABLE"}
    if new_connections:
        policy["connectionPool"] = {"http": {"maxRequestsPerConnection": 1}}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "web", "namespace": "bench"},
        "spec": {"host": "web", "trafficPolicy": policy},
    }


def _latencies(n: int) -> list[float]:
    conn = http.client.HTTPConnection(CLIENT, 15001, timeout=10)
    out = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            conn.request("GET", "http://web.bench/", headers={"host": "web.bench"})
            r = conn.getresponse()
            r.read()
            out.append(time.perf_counter() - t)
            assert r.status == 200, r.status
    finally:
        conn.close()
    return out


def _handshakes() -> int:
    body = urllib.request.urlopen(f"http://{SERVER}:15000/stats?filter=ssl.handshake", timeout=5)
    total = 0
    for line in body.read().decode().splitlines():
        name, _, value = line.partition(": ")
        if name.startswith("listener.") and name.endswith(".ssl.handshake"):
            total += int(value)
    return total


def _summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1e3 for s in samples)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[int(len(ms) * 0.99) - 1], 3),
    }


async def run(requests: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="pf-bench-mtls-"))
    config = workdir / "config"
    config.mkdir()
    (config / "mesh.yaml").write_text(yaml.safe_dump_all(_objects()))
    mesh = LocalMesh(config, workdir=workdir, debounce=0.05)
    ready = asyncio.Event()
    task = asyncio.create_task(mesh.run(ready))
    await asyncio.wait_for(ready.wait(), 120)
    results: dict[str, Any] = {"requests": requests}
    try:
        for new_connections in (False, True):
            for mtls in (True, False):
                before = mesh.store.generation
                (config / "rule.yaml").write_text(yaml.safe_dump(_rule(mtls, new_connections)))
                mesh.source.scan()
                await asyncio.wait_for(mesh.wait_synced(before), 60)
                await asyncio.sleep(1.5)  # old connections drain (local mode: 1 s)
                _latencies(50)  # warm up
                shakes = _handshakes()
                samples = await asyncio.to_thread(_latencies, requests)
                mode = "new" if new_connections else "kept"
                key = f"{mode}_connections_{'mtls' if mtls else 'plaintext'}"
                results[key] = {**_summary(samples), "server_handshakes": _handshakes() - shakes}
    finally:
        task.cancel()
    for mode in ("kept", "new"):
        m, p = results[f"{mode}_connections_mtls"], results[f"{mode}_connections_plaintext"]
        results[f"{mode}_connections_added_median_ms"] = round(m["median_ms"] - p["median_ms"], 3)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    args = p.parse_args()
    argv = ["-m", "pilotfish_operator.local.echo", "--name", "web", "--listen", f"{SERVER}:8080"]
    echo = subprocess.Popen(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        print(json.dumps(asyncio.run(run(args.requests)), indent=2))
    finally:
        echo.terminate()


if __name__ == "__main__":
    main()

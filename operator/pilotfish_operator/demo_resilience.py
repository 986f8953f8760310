"""`pilotfish demo resilience`: what the mesh does for a misbehaving service, live.

Real Envoy sidecars in local mode in front of real backends that misbehave. Four
scenes, each measured from real requests sent by a separate process:

1. retries mask a flaky backend (it fails two requests of three with 503);
2. outlier detection ejects a pod that answers 500;
3. a circuit breaker sheds load on a slow backend;
4. a fault is injected for one header only.

It exits 0 when every effect is within bounds.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from . import demo
from .demo import _bar, _load_from
from .local.echo import CONTROL
from .local.runner import LocalMesh

NS = "resilience"
CLIENT_IP = "127.0.11.10"
PORT = 8080
# name -> (ip, service, echo arguments)
BACKENDS: dict[str, tuple[str, str, list[str]]] = {
    "flaky-1": ("127.0.11.11", "flaky", ["--pattern", "503,503,200"]),
    "shop-good": ("127.0.11.12", "shop", []),
    "shop-bad": ("127.0.11.13", "shop", ["--status", "500"]),
    "slow-1": ("127.0.11.14", "slow", ["--delay", "0.3"]),
}


def _object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    api = "v1" if kind == "Service" else "networking.istio.io/v1"
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def mesh_objects() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "labels": {"mesh-injection": "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": NS, "labels": {"app": "client"}},
            "status": {"podIP": CLIENT_IP, "phase": "Running"},
        },
    ]
    for service in sorted({s for _, s, _ in BACKENDS.values()}):
        out.append(
            _object(
                "Service",
                service,
                {"selector": {"app": service}, "ports": [{"name": "http", "port": PORT}]},
            )
        )
    for name, (ip, service, _) in BACKENDS.items():
        labels = {"app": service, "sidecar.pilotfish.io/inject": "false"}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": NS, "labels": labels},
                "spec": {"containers": [{"name": "app", "ports": [{"containerPort": PORT}]}]},
                "status": {"podIP": ip, "phase": "Running"},
            }
        )
    return out


def _statuses(
    service: str, n: int, headers: dict[str, str] | None = None, by_status: bool = False
) -> Counter[str]:
    """n requests from a separate process: who answered (the status when nobody did),
    or with `by_status` the status each got."""
    url = f"http://{service}.{NS}:{PORT}/"
    return Counter(_load_from(CLIENT_IP, url, n, headers or {}, by_status))


def _concurrent(service: str, n: int) -> Counter[str]:
    """n requests at once, each on its own connection (a separate process)."""
    code = (
        "import http.client, json, sys, concurrent.futures as f\n"
        "def one(_):\n"
        f"    c = http.client.HTTPConnection('{CLIENT_IP}', 15001, timeout=10)\n"
        f"    h = '{service}.{NS}:{PORT}'\n"
        "    c.request('GET', 'http://' + h + '/', headers={'host': h})\n"
        "    r = c.getresponse(); r.read()\n"
        "    return 'shed' if r.getheader('x-envoy-overloaded') == 'true' else str(r.status)\n"
        f"with f.ThreadPoolExecutor({n}) as p: print(json.dumps(list(p.map(one, range({n})))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return Counter(yaml.safe_load(out.stdout))


def _show(title: str, counts: Counter[str], n: int) -> None:
    print(f"  {title}")
    for who, got in sorted(counts.items()):
        print(f"    {who:14s} {got:5d} {_bar(got, n, 30)}")


async def _scenes(mesh: LocalMesh, config: Path, n: int) -> bool:
    ok = True

    async def apply(name: str, *objects: dict[str, Any]) -> float:
        return await demo.apply(mesh, config, name, *objects)

    def check(label: str, good: bool) -> None:
        nonlocal ok
        ok &= good
        print(f"  → {label}: {'ok' if good else 'OUT OF BOUNDS'}\n")

    to_flaky: dict[str, Any] = {"route": [{"destination": {"host": "flaky"}}]}
    route = {"hosts": ["flaky"], "http": [to_flaky]}
    print("1. retries: flaky answers 503 to two requests of three")
    no_retry = {"hosts": ["flaky"], "http": [{**to_flaky, "retries": {"attempts": 0}}]}
    ms = await apply("flaky.yaml", _object("VirtualService", "flaky", no_retry))
    without = await asyncio.to_thread(_statuses, "flaky", n, None, True)
    _show(f"retries: {{attempts: 0}} (applied in {ms:.0f} ms)", without, n)
    ms = await apply("flaky.yaml", _object("VirtualService", "flaky", route))
    masked = await asyncio.to_thread(_statuses, "flaky", n, None, True)
    _show(
        f"no retries field: Istio's default, 2 retries on 503 (applied in {ms:.0f} ms)", masked, n
    )
    check(
        "the default retry policy hides every failure",
        masked == {"status 200": n} and without.get("status 503", 0) > n // 2,
    )

    print("2. outlier detection: shop-bad answers 500")
    before = await asyncio.to_thread(_statuses, "shop", n)
    _show("round robin over both pods", before, n)
    outlier = {
        "consecutive5xxErrors": 2,
        "interval": "1s",
        "baseEjectionTime": "30s",
        "maxEjectionPercent": 100,
    }
    ms = await apply(
        "shop.yaml",
        _object(
            "DestinationRule",
            "shop",
            {"host": "shop", "trafficPolicy": {"outlierDetection": outlier}},
        ),
    )
    after = await asyncio.to_thread(_statuses, "shop", n)
    _show(f"outlierDetection {{consecutive5xxErrors: 2}} (applied in {ms:.0f} ms)", after, n)
    check(
        "shop-bad ejected after two failures",
        after.get("shop-bad", 0) <= 2 and before.get("shop-bad", 0) >= n // 4,
    )

    print("3. circuit breaker: slow takes 300 ms a request, 20 arrive at once")
    open_ = await asyncio.to_thread(_concurrent, "slow", 20)
    _show("no connection pool limits (Istio's default)", open_, 20)
    pool = {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}}
    ms = await apply(
        "slow.yaml",
        _object(
            "DestinationRule", "slow", {"host": "slow", "trafficPolicy": {"connectionPool": pool}}
        ),
    )
    shed = await asyncio.to_thread(_concurrent, "slow", 20)
    _show(
        f"connectionPool maxConnections 1, http1MaxPendingRequests 1 (applied in {ms:.0f} ms)",
        shed,
        20,
    )
    check(
        "excess load shed at once",
        open_ == {"200": 20} and shed.get("shed", 0) >= 10 and shed.get("200", 0) >= 1,
    )

    print("4. fault injection for one header: x-user: tester gets 503")
    vs = {
        "hosts": ["shop"],
        "http": [
            {
                "match": [{"headers": {"x-user": {"exact": "tester"}}}],
                "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}},
                "route": [{"destination": {"host": "shop"}}],
            },
            {"route": [{"destination": {"host": "shop"}}]},
        ],
    }
    ms = await apply("shop-vs.yaml", _object("VirtualService", "shop", vs))
    tester = await asyncio.to_thread(_statuses, "shop", n, {"x-user": "tester"})
    others = await asyncio.to_thread(_statuses, "shop", n)
    _show(f"x-user: tester (applied in {ms:.0f} ms)", tester, n)
    _show("everyone else", others, n)
    check(
        "only the tester sees the fault", tester == {"status 503": n} and others == {"shop-good": n}
    )
    return ok


def run_demo_resilience(requests: int = 60, envoy: str | None = None) -> int:
    assert CONTROL  # the echo backends' control paths are not used: behaviour is fixed
    with tempfile.TemporaryDirectory(prefix="pilotfish-demo-") as tmp:
        backends = []
        try:
            for name, (ip, _, extra) in BACKENDS.items():
                args = [sys.executable, "-m", "pilotfish_operator.local.echo", "--name", name]
                proc = subprocess.Popen(
                    [*args, "--listen", f"{ip}:{PORT}", *extra],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,  # clients the breaker sheds reset connections
                    text=True,
                )
                backends.append(proc)
                assert proc.stdout is not None
                proc.stdout.readline()  # "ready"
            scenes = functools.partial(_scenes, n=requests)
            ok = asyncio.run(demo.in_local_mesh(Path(tmp), mesh_objects(), envoy, scenes))
        finally:
            for proc in backends:
                proc.terminate()
                proc.wait()
    print("resilience: " + ("every effect within bounds" if ok else "FAILED"))
    return 0 if ok else 1

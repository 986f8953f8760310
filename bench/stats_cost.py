"""What Istio's standard metrics cost a sidecar: the same Envoy, the same config, with
the metrics on (the default) and off the way a user turns them off, a mesh-wide
Telemetry (root namespace, no selector, `metrics: [{overrides: [{disabled: true}]}]`).
Everything runs in local mode (`LocalMesh`: real Envoys on loopback addresses).

Memory (`--part memory`): one client sidecar holding the config for `--services`
services (bench/workload.py's objects; every endpoint answered by one small asyncio
server listening on all loopback addresses). Envoy's RSS and heap (admin `/memory`)
once the config is acknowledged, then after `--rounds` requests to every service (the stats
logger creates a series per peer and response code lazily, on first use), and the
number of `istio_*` stats and Prometheus series at the admin endpoint. A fresh mesh
per measurement, stats on and off alternately (`--memory-runs` each).

CPU (`--part cpu`): client sidecar → server sidecar (mTLS) → echo backend, h2load
(HTTP/1.1, keep-alive, `--connections`) at a fixed `--rate` through the client
sidecar's outbound port. Each Envoy's CPU time (utime + stime from /proc) over
`--duration` seconds, per 1,000 requests answered (= cores at 1,000 rps). One mesh;
the Telemetry is added and removed between runs, in the order on, off, off, on, …
(`--cpu-runs` each), after a warm-up at the same rate.

h2load comes from Debian's nghttp2-client (`make bench-deps`).

    python bench/stats_cost.py [--part all|memory|cpu] [--services 1000] [--rate 1000]
        [--duration 10] [--cpu-runs 3] [--memory-runs 3] [--json]

Prints a table (or, with --json, the JSON results) and writes bench/out/stats_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

import workload
from envoys import stop
from pilotfish_operator.local.runner import LocalMesh
from pilotfish_operator.translate import proxy_id

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
ROOT_NS = "pilotfish-system"
MEM_CLIENT = "127.0.78.10"
CPU_CLIENT, CPU_SERVER = "127.0.79.10", "127.0.79.11"
ADMIN, OUTBOUND = 15000, 15001
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_S = 5.0

STATS_OFF = {
    "apiVersion": "telemetry.istio.io/v1",
    "kind": "Telemetry",
    "metadata": {"name": "mesh-default", "namespace": ROOT_NS},
    "spec": {"metrics": [{"overrides": [{"disabled": True}]}]},
}
"""The user's way to turn the standard metrics off mesh-wide."""


# ---------------------------------------------------------------------- helpers


def admin_get(ip: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:{ADMIN}{path}", timeout=10) as r:
        text: str = r.read().decode()
        return text


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def memory(ip: str, pid: int) -> dict[str, float]:
    """RSS (kernel) and tcmalloc's view (admin /memory): bytes allocated and the heap."""
    m = json.loads(admin_get(ip, "/memory"))
    return {
        "rss_mib": round(rss_mib(pid), 1),
        "allocated_mib": round(int(m["allocated"]) / 2**20, 1),
        "heap_mib": round(int(m["heap_size"]) / 2**20, 1),
    }


def istio_series(ip: str) -> dict[str, int]:
    """`istio_*` stats (a counter or histogram per tag set) and the Prometheus series
    they export (a histogram: its buckets, sum and count); the scrape's size."""
    stats = [
        line
        for line in admin_get(ip, "/stats?filter=istio").splitlines()
        if line.split(":", 1)[0].split(".", 1)[0].startswith("istio")
    ]
    scrape = admin_get(ip, "/stats/prometheus")
    prom = [line for line in scrape.splitlines() if line.startswith("envoy_istio_")]
    return {"stats": len(stats), "prometheus_series": len(prom), "scrape_bytes": len(scrape)}


def tag_sets(ip: str) -> int:
    """Distinct label sets of istio_requests_total: a smaller admin answer than
    `istio_series` (whose buffers tcmalloc keeps, and the next reading would show)."""
    text = admin_get(ip, "/stats?filter=" + quote(r"^istio\.requests_total\."))
    return len(text.splitlines())


def sidecar_pid(mesh: LocalMesh, node_id: str) -> int:
    sidecars = mesh._sidecars  # which process is which
    assert sidecars is not None
    return sidecars.running[node_id].process.pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port: int = s.getsockname()[1]
        return port


def echo(name: str, listen: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilotfish_operator.local.echo", "--name", name, "--listen", listen],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # a client closing its connection is not news
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n"
    b"x-served-by: svc\r\n\r\nok\n"
)


def serve_many(port: int) -> None:
    """`--serve-many PORT`: the memory part's backend, 200 to every GET on every
    loopback address. asyncio, not echo.py's thread per connection: the client sidecar
    keeps a connection to each of the 3,000 endpoints it has used, per worker."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")  # GETs: no body
                writer.write(RESPONSE)
                await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(answer, "0.0.0.0", port, backlog=1024)
        print("ready", flush=True)
        await server.serve_forever()

    asyncio.run(main())


def many_backend(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-many", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@contextlib.asynccontextmanager
async def local_mesh(
    config: Path,
    workdir: Path,
    on_demand: bool = False,
    converge_timeout: float = 60.0,
    delta: bool = False,
) -> AsyncIterator[LocalMesh]:
    """`on_demand`: scoped sidecars; `converge_timeout`: 10,000 services take longer;
    `delta`: Delta xDS (bench/scoping.py)."""
    mesh = LocalMesh(
        config,
        workdir=workdir,
        debounce=0.05,
        monitoring=None,
        on_demand=on_demand,
        converge_timeout=converge_timeout,
        delta=delta,
    )
    ready = asyncio.Event()
    task = asyncio.create_task(mesh.run(ready))
    waiting = asyncio.create_task(ready.wait())
    try:
        done, _ = await asyncio.wait(
            [task, waiting],
            timeout=max(600, converge_timeout),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            task.result()
        if not ready.is_set() or mesh.lagging:
            raise RuntimeError(f"local mesh not ready: {mesh.lagging or 'timeout'}")
        yield mesh
    finally:
        waiting.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def median_spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


# ---------------------------------------------------------------------- memory


def memory_objects(n: int, port: int, stats_on: bool) -> Iterator[dict[str, Any]]:
    """bench/workload.py's N services (pods, no EndpointSlices, as local mode reads
    them), each endpoint's port moved to `port`, where one server answers on every
    loopback address."""
    yield {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ROOT_NS}}
    if not stats_on:
        yield STATS_OFF
    for obj in workload.objects(n, client_ip=MEM_CLIENT, endpoints="pods"):
        if obj["kind"] == "Service":
            for p in obj["spec"]["ports"]:
                p["targetPort"] = port
        elif obj["kind"] == "Pod" and obj["metadata"]["namespace"] != workload.CLIENT_NS:
            for c in obj["spec"]["containers"]:
                for p in c.get("ports", []):
                    p["containerPort"] = port
        yield obj


def touch_services(n: int) -> dict[str, int]:
    """One request to each service through the client sidecar; statuses counted."""
    statuses: Counter[str] = Counter()
    conn = http.client.HTTPConnection(MEM_CLIENT, OUTBOUND, timeout=10)
    for i in range(n):
        try:
            conn.request("GET", "/", headers={"host": workload.host(i)})
            response = conn.getresponse()
            response.read()
            statuses[str(response.status)] += 1
        except (OSError, http.client.HTTPException) as err:
            statuses[type(err).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection(MEM_CLIENT, OUTBOUND, timeout=10)
    conn.close()
    return dict(statuses)


async def wait_clusters_active(ip: str, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    pattern = re.compile(r"cluster_manager\.(warming_clusters|cds\.update_success): (\d+)")
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(admin_get, ip, "/stats?filter=^cluster_manager")
        found = dict(pattern.findall(text))
        if found.get("warming_clusters") == "0" and int(found.get("cds.update_success", 0)):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("clusters still warming")


async def memory_run(n: int, rounds: int, stats_on: bool, port: int) -> dict[str, Any]:
    node = proxy_id(workload.CLIENT_NS, workload.CLIENT_POD)
    with tempfile.TemporaryDirectory(prefix="stats-mem-", dir=OUT) as tmp:
        workdir = Path(tmp)
        config = workdir / "config"
        config.mkdir()
        (config / "mesh.yaml").write_text(
            yaml.safe_dump_all(memory_objects(n, port, stats_on), sort_keys=False)
        )
        t0 = time.monotonic()
        async with local_mesh(config, workdir) as mesh:
            await wait_clusters_active(MEM_CLIENT)
            out: dict[str, Any] = {
                "stats": "on" if stats_on else "off",
                "ready_s": round(time.monotonic() - t0, 1),
                "loadavg": os.getloadavg()[0],
            }
            pid = sidecar_pid(mesh, node)
            await asyncio.sleep(2)  # EDS settles, first stats flush
            # Memory first at each point, then the count (its answer is garbage after).
            out["acked"] = memory(MEM_CLIENT, pid)
            out["acked"]["tag_sets"] = tag_sets(MEM_CLIENT)
            for r in range(1, rounds + 1):
                statuses = await asyncio.to_thread(touch_services, n)
                await asyncio.sleep(1)
                point: dict[str, Any] = memory(MEM_CLIENT, pid)
                point.update(tag_sets=tag_sets(MEM_CLIENT), statuses=statuses)
                out[f"after_{r}_per_service"] = point
            # What the admin exports, and what one Prometheus scrape leaves behind.
            out["series"] = istio_series(MEM_CLIENT)
            out["after_scrape"] = memory(MEM_CLIENT, pid)
            return out


async def memory_part(n: int, rounds: int, runs: int) -> dict[str, Any]:
    port = free_port()
    backend = many_backend(port)
    results: list[dict[str, Any]] = []
    try:
        for k in range(runs):
            for stats_on in (True, False) if k % 2 == 0 else (False, True):
                print(
                    f"  memory: {n} services, stats {'on' if stats_on else 'off'}", file=sys.stderr
                )
                results.append(await memory_run(n, rounds, stats_on, port))
    finally:
        stop(backend)
    summary: dict[str, Any] = {}
    points = ["acked", *(f"after_{r}_per_service" for r in range(1, rounds + 1)), "after_scrape"]
    for side in ("on", "off"):
        rs = [r for r in results if r["stats"] == side]
        summary[side] = {
            p: {
                key: statistics.median(r[p][key] for r in rs)
                for key in ("rss_mib", "allocated_mib", "heap_mib", "tag_sets")
                if key in rs[0][p]
            }
            for p in points
        }
        summary[side]["series"] = {
            key: statistics.median(r["series"][key] for r in rs)
            for key in ("stats", "prometheus_series", "scrape_bytes")
        }
    summary["per_service_kib"] = {
        p: {
            key: round((summary["on"][p][key] - summary["off"][p][key]) * 1024 / n, 2)
            for key in ("rss_mib", "allocated_mib")
        }
        for p in points
    }
    summary["per_label_set_kib"] = {
        p: round(
            (summary["on"][p]["allocated_mib"] - summary["off"][p]["allocated_mib"])
            * 1024
            / summary["on"][p]["tag_sets"],
            2,
        )
        for p in points[1:-1]
        if summary["on"][p]["tag_sets"]
    }
    summary["growth_with_traffic_kib_per_service"] = {
        side: {
            key: round((summary[side][points[-2]][key] - summary[side]["acked"][key]) * 1024 / n, 2)
            for key in ("rss_mib", "allocated_mib")
        }
        for side in ("on", "off")
    }
    return {"services": n, "rounds": rounds, "runs": results, "summary": summary}


# ---------------------------------------------------------------------- CPU


def cpu_objects() -> list[dict[str, Any]]:
    def pod(name: str, ip: str, port: int | None) -> dict[str, Any]:
        container: dict[str, Any] = {"name": "app"}
        if port:
            container["ports"] = [{"containerPort": port}]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench", "labels": {"app": name}},
            "spec": {"containers": [container]},
            "status": {"podIP": ip, "phase": "Running"},
        }

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ROOT_NS}},
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "bench", "labels": {"mesh-injection": "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "bench"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
        pod("client", CPU_CLIENT, None),
        pod("web", CPU_SERVER, 8080),
    ]


def h2load(rate: int, connections: int, duration: float) -> dict[str, Any]:
    """h2load at a fixed total rate (HTTP/1.1, kept-alive connections) through the
    client sidecar; what it reports."""
    per_connection = rate / connections
    proc = subprocess.run(
        [
            "h2load",
            "--h1",
            "-c",
            str(connections),
            "--rps",
            f"{per_connection:g}",
            "-D",
            f"{duration:g}",
            "-H",
            ":authority: web.bench",
            f"http://{CPU_CLIENT}:{OUTBOUND}/",
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )
    text = proc.stdout
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", text)
    codes = re.search(r"status codes: (\d+) 2xx", text)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", text)
    if not done or not codes:
        raise RuntimeError(f"unexpected h2load output:\n{text}")
    return {
        "requests": int(done.group(2)),
        "ok": int(codes.group(1)),
        "mean_latency": mean.group(1) if mean else None,
    }


async def cpu_part(rate: int, connections: int, duration: float, runs: int) -> dict[str, Any]:
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: `make bench-deps` (Debian's nghttp2-client)")
    backend = echo("web", f"{CPU_SERVER}:8080")
    results: list[dict[str, Any]] = []
    idle: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="stats-cpu-", dir=OUT) as tmp:
            workdir = Path(tmp)
            config = workdir / "config"
            config.mkdir()
            (config / "mesh.yaml").write_text(yaml.safe_dump_all(cpu_objects()))
            async with local_mesh(config, workdir) as mesh:
                pids = {
                    "client": sidecar_pid(mesh, proxy_id("bench", "client")),
                    "server": sidecar_pid(mesh, proxy_id("bench", "web")),
                }
                # What the sidecars burn with no traffic (stats flushes, xDS): included in
                # the per-request figures below, so known.
                await asyncio.sleep(2)
                idle_before = {k: cpu_seconds(p) for k, p in pids.items()}
                await asyncio.sleep(IDLE_S)
                idle = {
                    k: round((cpu_seconds(p) - idle_before[k]) / IDLE_S, 4) for k, p in pids.items()
                }
                order = [(k % 2 == 0) == (j == 0) for k in range(runs) for j in range(2)]
                current = True
                for stats_on in order:
                    if stats_on != current:
                        before = mesh.store.generation
                        off = config / "telemetry.yaml"
                        if stats_on:
                            off.unlink()
                        else:
                            off.write_text(yaml.safe_dump(STATS_OFF))
                        mesh.source.scan()
                        await asyncio.wait_for(mesh.wait_synced(before), 60)
                        await asyncio.sleep(2)  # listeners replaced, old ones drained
                        current = stats_on
                    label = "on" if stats_on else "off"
                    print(f"  cpu: {rate} rps, stats {label}", file=sys.stderr)
                    await asyncio.to_thread(h2load, rate, connections, 2)  # warm-up
                    before_cpu = {k: cpu_seconds(p) for k, p in pids.items()}
                    t0 = time.monotonic()
                    load = await asyncio.to_thread(h2load, rate, connections, duration)
                    elapsed = time.monotonic() - t0
                    used = {k: cpu_seconds(p) - before_cpu[k] for k, p in pids.items()}
                    if load["ok"] != load["requests"]:
                        raise RuntimeError(f"non-2xx answers with stats {label}: {load}")
                    series = istio_series(CPU_CLIENT)["stats"] + istio_series(CPU_SERVER)["stats"]
                    results.append(
                        {
                            "stats": label,
                            **load,
                            "elapsed_s": round(elapsed, 2),
                            "achieved_rps": round(load["requests"] / duration, 1),
                            "loadavg": os.getloadavg()[0],
                            "istio_stats": series,
                            **{f"{k}_cpu_s": round(v, 2) for k, v in used.items()},
                            **{
                                f"{k}_cpu_s_per_1k": round(v * 1000 / load["requests"], 4)
                                for k, v in used.items()
                            },
                        }
                    )
    finally:
        stop(backend)
    summary: dict[str, Any] = {}
    for side in ("on", "off"):
        rs = [r for r in results if r["stats"] == side]
        summary[side] = {
            k: median_spread([r[f"{k}_cpu_s_per_1k"] for r in rs]) for k in ("client", "server")
        }
        summary[side]["achieved_rps"] = statistics.median(r["achieved_rps"] for r in rs)
    summary["overhead_pct"] = {
        k: round(
            100 * (summary["on"][k]["median"] / summary["off"][k]["median"] - 1),
            1,
        )
        for k in ("client", "server")
    }
    return {
        "rate": rate,
        "connections": connections,
        "duration_s": duration,
        "idle_cores": idle,
        "runs": results,
        "summary": summary,
    }


# ---------------------------------------------------------------------- report


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    mem = results.get("memory")
    if mem:
        s = mem["summary"]
        n = mem["services"]
        lines.append(f"memory, client sidecar, {n:,} services (medians of {len(mem['runs']) // 2})")
        lines.append(
            f"  {'':22} {'RSS on/off MiB':>16} {'heap alloc on/off':>18} "
            f"{'delta KiB/service (RSS, alloc)':>31} {'label sets on/off':>18}"
        )
        for p, per in s["per_service_kib"].items():
            on, off = s["on"][p], s["off"][p]
            sets = f"{on['tag_sets']:.0f}/{off['tag_sets']:.0f}" if "tag_sets" in on else ""
            lines.append(
                f"  {p:22} {on['rss_mib']:7.1f}/{off['rss_mib']:<8.1f} "
                f"{on['allocated_mib']:8.1f}/{off['allocated_mib']:<9.1f} "
                f"{per['rss_mib']:15.2f}, {per['allocated_mib']:<14.2f} {sets:>18}"
            )
        per_set = ", ".join(f"{v:.1f}" for v in s["per_label_set_kib"].values())
        lines.append(f"  heap per label set (4 stats), after each round: {per_set} KiB")
        series = s["on"]["series"]
        lines.append(
            f"  stats on, at the end: {series['stats']:.0f} istio stats, "
            f"{series['prometheus_series']:.0f} Prometheus series, "
            f"scrape {series['scrape_bytes'] / 2**20:.1f} MiB"
        )
    cpu = results.get("cpu")
    if cpu:
        s = cpu["summary"]
        runs = len(cpu["runs"]) // 2
        lines.append(
            f"CPU-seconds per 1,000 requests (= cores at 1,000 rps), {cpu['rate']} rps offered, "
            f"{cpu['duration_s']:g} s x {runs} runs; median [min, max]"
        )
        for k in ("client", "server"):
            on, off = s["on"][k], s["off"][k]
            lines.append(
                f"  {k:7} on {on['median']:.4f} [{on['min']:.4f}, {on['max']:.4f}]  "
                f"off {off['median']:.4f} [{off['min']:.4f}, {off['max']:.4f}]  "
                f"overhead {s['overhead_pct'][k]:+.1f} %"
            )
        idle = cpu["idle_cores"]
        lines.append(
            f"  idle (no traffic, stats on): client {idle['client']:.4f}, "
            f"server {idle['server']:.4f} cores"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"loadavg_at_start": os.getloadavg()}
    if args.part in ("all", "memory"):
        results["memory"] = await memory_part(args.services, args.rounds, args.memory_runs)
    if args.part in ("all", "cpu"):
        results["cpu"] = await cpu_part(args.rate, args.connections, args.duration, args.cpu_runs)
    results["loadavg_at_end"] = os.getloadavg()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--part", choices=("all", "memory", "cpu"), default="all")
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3, help="requests to every service")
    p.add_argument("--memory-runs", type=int, default=3)
    p.add_argument("--rate", type=int, default=1000, help="requests per second offered")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--cpu-runs", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print the JSON results, not a table")
    p.add_argument("--serve-many", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_many:
        serve_many(args.serve_many)
        return
    OUT.mkdir(exist_ok=True)
    results = asyncio.run(main_async(args))
    (OUT / "stats_cost.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        json.dump(results, sys.stdout)
    else:
        print(table(results))
        print(f"\nwrote {OUT / 'stats_cost.json'}")


if __name__ == "__main__":
    main()

"""One real Envoy connected to the control plane (local-mode style), in a fresh process.

- Control plane: Store → Pipeline (debounce 50 ms) → SnapshotCache → `serve()` ADS.
- One client sidecar: real Envoy started with `pilotfish_xds.bootstrap.bootstrap(...)`.
- Service 0's three endpoints are real echo servers (`v1-a`, `v1-b` in subset v1,
  `v2` in subset v2); a prober process sends requests through the sidecar.

The sidecar is served the full config (every service) over Delta xDS, as an injected
sidecar is when scoping is off (`--sotw`: State of the World, `pilotfish local
--no-on-demand`'s default).

Measured:
- full push to a new proxy (its snapshot built when it connects): Envoy process
  start → every type ACKed at the snapshot's version (`all_acked_s`), → Envoy live:
  all clusters active, listeners warmed with their routes (`clusters_active_s`), and
  the later of the two (`ready_s`); Envoy's and the control plane's CPU time; a
  timeline of responses sent and ACKs received. Repeated `--starts` times: the first
  start also encodes every resource (`first_start_ready_s`), the medians are over the
  later ones, which reuse them (as a proxy whose config others share);
- one-route edit: service 0's VirtualService flips 100/0 ↔ 0/100; from the start of
  the rebuild (the debounce window closing) to Envoy's RDS ACK of the new version,
  and to the first response from the new subset's backend;
- floor: the very config served (static_floor.py: the snapshot's own resources, EDS
  endpoints and RDS routes inline, a binary bootstrap), Envoy process start → live;
  alternated with the full-push starts, same `--concurrency`. `loaded` shows what
  each Envoy had loaded (clusters, listeners, virtual hosts, a request through it).

    python bench/envoy_edit.py --n 1000 [--edits 10] [--starts 3] [--static-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import workload
from envoys import (
    TimedPipeline,
    TimedStatus,
    admin_get,
    admin_stats,
    envoy_rss_mib,
    start_envoy,
    stop,
    wait_live,
)
from pilotfish_operator.store import Store
from pilotfish_operator.translate import Options, proxy_id
from pilotfish_xds import types
from pilotfish_xds.bootstrap import bootstrap
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.server import serve
from static_floor import static_bootstrap

SUBNET = "127.0.77"
CLIENT_IP = f"{SUBNET}.10"
BACKENDS = {"v1-a": f"{SUBNET}.11", "v1-b": f"{SUBNET}.12", "v2": f"{SUBNET}.13"}
NODE = proxy_id(workload.CLIENT_NS, workload.CLIENT_POD)
HERE = Path(__file__).resolve().parent


def check_loaded(ip: str, clusters: int, listeners: int) -> dict[str, Any]:
    """What the Envoy at `ip` has loaded (active clusters and listeners, virtual
    hosts) and whether a request through it reaches service 0's backends."""
    stats = admin_stats(ip, 60)  # a million stats to walk at 10,000 services
    if (
        stats.get("active_clusters", 0) < clusters
        or stats.get("total_listeners_active") != listeners
    ):
        raise RuntimeError(f"Envoy at {ip} is live without its config: {stats}")
    vhosts = 0
    for resource in ("static_route_configs", "dynamic_route_configs"):
        got = admin_get(ip, f"/config_dump?resource={resource}", 60)
        for config in json.loads(got[1]).get("configs", []) if got else ():
            vhosts += len(config.get("route_config", {}).get("virtual_hosts", []))
    conn = http.client.HTTPConnection(ip, 15001, timeout=5)
    conn.request("GET", "/", headers={"host": workload.host(workload.EDITED)})
    response = conn.getresponse()
    response.read()
    conn.close()
    return {
        **stats,
        "virtual_hosts": vhosts,
        "request": f"{response.status} {response.getheader('x-served-by')}",
    }


async def envoy_start(
    cache: SnapshotCache, status: TimedStatus, config: Path, log: Path, concurrency: int
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the client's Envoy; time until every type is ACKed at the snapshot's
    version, and until Envoy is live (all clusters active, listeners warmed)."""
    acks_before, sends_before = len(status.acks), len(status.sends)
    t0, cpu0 = time.monotonic(), time.process_time()
    proc = start_envoy(config, log, "--concurrency", str(concurrency))
    live_at = asyncio.create_task(wait_live(CLIENT_IP, 120, proc.pid))
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
    cpu = time.process_time() - cpu0
    live = await live_at
    if done is None or live is None:
        stop(proc)
        raise RuntimeError(f"Envoy did not ACK its config or go live within 120 s; see {log}")
    short = {t: t.rsplit(".", 1)[-1] for t in types.SHORT_NAMES.values()}
    return proc, {
        "all_acked_s": done - t0,
        "clusters_active_s": live[0] - t0,
        "ready_s": max(done, live[0]) - t0,
        "envoy_cpu_s": live[1],
        "control_plane_cpu_s": cpu,
        "ack_s_by_type": {short[t]: x - t0 for x, t, _ in status.acks[acks_before:]},
        # When each response was handed to gRPC and each ACK arrived, from Envoy's start.
        "timeline": sorted(
            [(x - t0, f"sent {short[t]}") for x, t, _ in status.sends[sends_before:]]
            + [(x - t0, f"ACK {short[t]}") for x, t, _ in status.acks[acks_before:]]
        ),
        "envoy_rss_mib": envoy_rss_mib(proc.pid),
        "acks_received": len(status.acks) - acks_before,
    }


async def static_start(
    config: Path, log: Path, concurrency: int
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start an Envoy on the static bootstrap; time until it is live."""
    t0 = time.monotonic()
    proc = start_envoy(config, log, "--concurrency", str(concurrency))
    live = await wait_live(CLIENT_IP, 120, proc.pid)
    if live is None:
        stop(proc)
        raise RuntimeError(f"the static Envoy did not go live within 120 s; see {log}")
    return proc, {
        "clusters_active_s": live[0] - t0,
        "ready_s": live[0] - t0,
        "envoy_cpu_s": live[1],
        "envoy_rss_mib": envoy_rss_mib(proc.pid),
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


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("all_acked_s", "clusters_active_s", "ready_s", "envoy_cpu_s", "control_plane_cpu_s")
    return {
        "runs": runs,
        **{f"median_{k}": median([r.get(k) for r in runs]) for k in keys if k in runs[0]},
        "max_envoy_rss_mib": max(r["envoy_rss_mib"] for r in runs),
    }


async def run(
    n: int,
    count: int,
    starts: int,
    static_runs: int,
    concurrency: int,
    workdir: Path,
    delta: bool = True,
) -> dict[str, Any]:
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
        # The full config (every service), as `pilotfish local --no-on-demand` serves it.
        pipeline = TimedPipeline(store, cache, Options(on_demand=False), debounce=0.05)
        task = asyncio.create_task(pipeline.run())
        while not pipeline.rebuilds:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        base = bootstrap(
            NODE,
            namespace=workload.CLIENT_NS,
            pod=workload.CLIENT_POD,
            labels={"app": "client"},
            xds_host="127.0.0.1",
            xds_port=port,
            admin_host=CLIENT_IP,
            delta=delta,
        )
        config = workdir / "client.bootstrap.json"
        config.write_text(json.dumps(base))
        static = workdir / "static.bootstrap.pb"
        out: dict[str, Any] = {
            "n": n,
            "clusters": len(pipeline.mesh.clusters),
            "xds": "delta" if delta else "sotw",
            "loaded": {},
        }
        startups: list[dict[str, Any]] = []
        floor: list[dict[str, Any]] = []
        edit_runs: list[dict[str, Any]] = []
        loaded = {"clusters": 0, "listeners": 0}
        # xDS starts and static starts alternate, so both see the same machine load.
        for s in range(max(starts, static_runs)):
            if s < starts:
                # A new proxy each time, not a restarted one the cache still holds the
                # config of: its snapshot is built when it connects (the first start
                # also encodes everything; later ones reuse encoded resources, as a
                # proxy whose config others share would).
                cache.clear(NODE)
                proc, info = await envoy_start(
                    cache, status, config, workdir / f"envoy-{n}-{s}.log", concurrency
                )
                procs.append(proc)
                startups.append(info)
                if s == 0:
                    snap = cache.get(NODE)
                    assert snap is not None
                    loaded["clusters"] = len(snap.resources(types.CLUSTER))
                    loaded["listeners"] = len(snap.resources(types.LISTENER))
                    # + the bootstrap's own cluster for the xDS server
                    out["loaded"]["xds"] = check_loaded(
                        CLIENT_IP, loaded["clusters"] + 1, loaded["listeners"]
                    )
                    edit_runs = await edits(store, pipeline, cache, status, count) if count else []
                    # What every later start is served (the edits changed service 0).
                    snap = cache.get(NODE)
                    assert snap is not None
                    static.write_bytes(static_bootstrap(snap, base))
                stop(proc)
                await asyncio.sleep(0.5)
            if s < static_runs:
                proc, info = await static_start(
                    static, workdir / f"static-{n}-{s}.log", concurrency
                )
                procs.append(proc)
                floor.append(info)
                if s == 0:
                    out["loaded"]["static"] = check_loaded(
                        CLIENT_IP, loaded["clusters"], loaded["listeners"]
                    )
                stop(proc)
                await asyncio.sleep(0.5)
        # The first start is the first proxy ever: every resource is encoded while it
        # waits. The medians are over the later ones (a new proxy whose resources
        # others already have), when there are any.
        out["full_push"] = {
            **summary(startups[1:] or startups),
            "runs": startups,
            "first_start_ready_s": startups[0]["ready_s"],
        }
        out["static_floor"] = summary(floor)
        pushed, floored = out["full_push"]["median_ready_s"], out["static_floor"]["median_ready_s"]
        out["full_push_vs_floor"] = pushed / floored if pushed and floored else None
        # Each start against the static start right after it: less moved by load drift.
        pairs = [x["ready_s"] / f["ready_s"] for x, f in zip(startups[1:], floor[1:], strict=False)]
        out["full_push_vs_floor_paired"] = median(pairs)
        out["full_push_vs_floor_cpu"] = (
            (out["full_push"]["median_envoy_cpu_s"] or 0)
            / out["static_floor"]["median_envoy_cpu_s"]
            if out["static_floor"].get("median_envoy_cpu_s")
            else None
        )
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
    p.add_argument(
        "--concurrency", type=int, default=2, help="Envoy worker threads, for both kinds of start"
    )
    p.add_argument(
        "--sotw",
        action="store_true",
        help="the sidecar uses State of the World (default: Delta, as injected sidecars do)",
    )
    args = p.parse_args()
    if args.starts < 1:
        p.error("--starts must be at least 1 (the first start also runs the edits)")
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="envoy-", dir=out_dir) as workdir:
        result = asyncio.run(
            run(
                args.n,
                args.edits,
                args.starts,
                args.static_runs,
                args.concurrency,
                Path(workdir),
                not args.sotw,
            )
        )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

"""Data-plane latency added by two sidecars: client → client sidecar → (mTLS) → server
sidecar → echo backend, against the same load sent straight to the backend, in the
same run. Local mode (`LocalMesh`, real Envoys on loopback addresses) with its defaults
(mesh mTLS on, scoped sidecars) and again with full (unscoped) sidecars.

Load: h2load (Debian's nghttp2-client, `make bench-deps`) at a fixed total `--rate`
over `--connections` kept-alive HTTP/1.1 connections, one h2load per connection with
`--rps` = rate / connections, started 1/rate apart so requests are spread evenly (an
open-loop timer, unlike Debian's wrk, which has no rate and measures a closed loop at
saturation), for `--duration` seconds after a warm-up at the same rate. Latency is
each request's time to its full response from h2load's `--log-file`, percentiles
over all requests of a run. Mesh and direct alternate (direct, mesh, mesh, direct, …)
`--runs` times each, so drift on the shared machine falls on both. The added latency is
the median over runs of mesh pXX - direct pXX. Istio's published figure to set it
against: "The Envoy proxy adds 2.76 ms to the 90th percentile latency" (Istio 1.7.4,
1,000 rps over 16 connections, client and server sidecars, mTLS).

    python bench/latency.py [--rate 1000] [--connections 16] [--duration 15]
        [--runs 3] [--sidecars scoped,full] [--no-metrics] [--json]

Prints a table (or, with --json, the JSON results) and writes bench/out/latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from envoys import stop
from stats_cost import CPU_CLIENT, CPU_SERVER, OUTBOUND, STATS_OFF, cpu_objects, echo, local_mesh

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
BACKEND_PORT = 8080  # stats_cost.cpu_objects' targetPort
PERCENTILES = (50, 90, 99)
ISTIO_P90_MS = 2.76


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def h2load(url: str, rate: int, connections: int, duration: float) -> dict[str, Any]:
    """`rate` requests/s in total over `connections`, per-request latencies (ms) from the
    logs. One h2load per connection, started 1/rate s apart: one h2load with `-c N --rps`
    fires all N connections' timers together, bursts of N requests at once."""
    with tempfile.TemporaryDirectory(prefix="h2load-", dir=OUT) as tmp:
        logs = [Path(tmp) / f"{i}.log" for i in range(connections)]
        procs = []
        for log in logs:
            cmd = ["h2load", "--h1", "-c", "1", "--rps", f"{rate / connections:g}"]
            cmd += ["-D", f"{duration:g}", "-H", ":authority: web.bench", "--log-file", str(log)]
            procs.append(
                subprocess.Popen([*cmd, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            )
            time.sleep(1 / rate)
        outputs = [proc.communicate(timeout=duration + 60)[0].decode() for proc in procs]
        if any(proc.returncode for proc in procs):
            raise RuntimeError(f"h2load failed:\n{outputs}")
        rows = [line.split("\t") for log in logs for line in log.read_text().splitlines() if line]
    ok = [int(r[2]) / 1000 for r in rows if r[1] == "200"]
    if not ok or len(ok) != len(rows):
        raise RuntimeError(f"{len(rows) - len(ok)} of {len(rows)} not 200:\n{outputs[0]}")
    ok.sort()
    return {
        "requests": len(rows),
        "achieved_rps": round(len(rows) / duration, 1),
        "mean_ms": round(statistics.fmean(ok), 3),
        **{f"p{p}_ms": round(percentile(ok, p), 3) for p in PERCENTILES},
        "max_ms": round(ok[-1], 3),
    }


async def measure(
    sidecars: str, rate: int, connections: int, duration: float, runs: int, metrics: bool
) -> dict[str, Any]:
    urls = {
        "mesh": f"http://{CPU_CLIENT}:{OUTBOUND}/",
        "direct": f"http://{CPU_SERVER}:{BACKEND_PORT}/",
    }
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="latency-", dir=OUT) as tmp:
        workdir = Path(tmp)
        config = workdir / "config"
        config.mkdir()
        objects = cpu_objects() if metrics else [*cpu_objects(), STATS_OFF]
        (config / "mesh.yaml").write_text(yaml.safe_dump_all(objects))
        async with local_mesh(config, workdir, on_demand=sidecars == "scoped"):
            for path in urls:  # warm-up: connections, scoped sidecars' on-demand fetch
                await asyncio.to_thread(h2load, urls[path], rate, connections, 3)
            for k in range(runs):
                for path in ("direct", "mesh") if k % 2 == 0 else ("mesh", "direct"):
                    print(f"  {sidecars} sidecars, {path}, run {k + 1}", file=sys.stderr)
                    load = await asyncio.to_thread(h2load, urls[path], rate, connections, duration)
                    results.append({"path": path, **load, "loadavg": os.getloadavg()[0]})
    summary: dict[str, Any] = {}
    for path in urls:
        rs = [r for r in results if r["path"] == path]
        summary[path] = {
            key: statistics.median(r[key] for r in rs)
            for key in ("achieved_rps", "mean_ms", *(f"p{p}_ms" for p in PERCENTILES), "max_ms")
        }
    direct = [r for r in results if r["path"] == "direct"]
    mesh = [r for r in results if r["path"] == "mesh"]
    pairs = list(zip(mesh, direct, strict=True))
    summary["added_ms"] = {
        f"p{p}": round(statistics.median(m[f"p{p}_ms"] - d[f"p{p}_ms"] for m, d in pairs), 3)
        for p in PERCENTILES
    }
    return {"sidecars": sidecars, "runs": results, "summary": summary}


def table(results: dict[str, Any]) -> str:
    lines = [
        f"latency, {results['rate']} rps offered over {results['connections']} connections, "
        f"{results['duration_s']:g} s x {results['runs']} runs per path (medians over runs), ms"
        + ("" if results["metrics"] else ", standard metrics off")
    ]
    head = "".join(f"{f'p{p}':>9}" for p in PERCENTILES)
    lines.append(f"  {'':24} {'rps':>7}{head}{'max':>9}")
    for m in results["measurements"]:
        s = m["summary"]
        for path in ("direct", "mesh"):
            cells = "".join(f"{s[path][f'p{p}_ms']:9.3f}" for p in PERCENTILES)
            label = f"{m['sidecars']} sidecars, {path}"
            lines.append(
                f"  {label:24} {s[path]['achieved_rps']:7.0f}{cells}{s[path]['max_ms']:9.2f}"
            )
        added = "".join(f"{s['added_ms'][f'p{p}']:9.3f}" for p in PERCENTILES)
        lines.append(f"  {'  added by two sidecars':24} {'':7}{added}")
    lines.append(f"  Istio 1.7.4 published: +{ISTIO_P90_MS} ms at p90 (1,000 rps, 16 connections)")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "rate": args.rate,
        "connections": args.connections,
        "duration_s": args.duration,
        "runs": args.runs,
        "metrics": args.metrics,
        "loadavg_at_start": os.getloadavg(),
        "measurements": [],
    }
    backend = echo("web", f"{CPU_SERVER}:{BACKEND_PORT}")
    try:
        for sidecars in args.sidecars.split(","):
            results["measurements"].append(
                await measure(
                    sidecars, args.rate, args.connections, args.duration, args.runs, args.metrics
                )
            )
    finally:
        stop(backend)
    results["loadavg_at_end"] = os.getloadavg()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=int, default=1000, help="requests per second offered")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--runs", type=int, default=3, help="runs per path (mesh, direct)")
    p.add_argument("--sidecars", default="scoped,full", help="scoped (the default), full")
    p.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        help="Istio's standard metrics off (mesh-wide Telemetry, as bench/stats_cost.py)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON results, not a table")
    args = p.parse_args()
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: `make bench-deps` (Debian's nghttp2-client)")
    OUT.mkdir(exist_ok=True)
    results = asyncio.run(main_async(args))
    (OUT / "latency.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        json.dump(results, sys.stdout)
    else:
        print(table(results))
        print(f"\nwrote {OUT / 'latency.json'}")


if __name__ == "__main__":
    main()

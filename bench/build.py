"""One benchmark size in a fresh process: full build, memory, per-type encode cost,
one-VirtualService incremental rebuild; or (`--mode profile`) a cProfile of the full
build; or (`--mode tracemalloc`) Python heap peaks. Prints one JSON object.

    python bench/build.py --n 1000 [--repeat 5] [--mode build|profile|tracemalloc]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import io
import json
import pstats
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import workload
from pilotfish_operator.pipeline import Pipeline
from pilotfish_operator.security.ca import MeshCA
from pilotfish_operator.security.issuer import Issuer
from pilotfish_operator.store import Store
from pilotfish_operator.translate import proxy_id
from pilotfish_xds import ir, wire
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.codec import EncodeCache, Encoded
from pilotfish_xds.translate import clusters, routes, view
from pilotfish_xds.translate.layouts import local

OUT = Path(__file__).resolve().parent / "out"


def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process, MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class CountingCache(EncodeCache):
    """An EncodeCache that also remembers which names it had to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.missed: list[str] = []

    def build(self, name: str, fn: Callable[..., Any], *args: Hashable) -> Encoded:
        before = self.misses
        found = super().build(name, fn, *args)
        if self.misses != before:
            self.missed.append(name)
        return found


class GcClock:
    """Seconds spent in the cyclic garbage collector (it runs inside the timed code)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


GC = GcClock()


def load_store(n: int) -> Store:
    store = Store()
    for obj in workload.objects(n):
        store.apply(obj)
    if store.errors():
        raise SystemExit(f"workload objects rejected: {store.errors()}")
    return store


def client(mesh: ir.Mesh) -> ir.Proxy:
    proxy = mesh.proxy(proxy_id(workload.CLIENT_NS, workload.CLIENT_POD))
    assert proxy is not None, "the client pod has no proxy"
    return proxy


CLIENT_ID = proxy_id(workload.CLIENT_NS, workload.CLIENT_POD)


def pipeline(store: Store, cache: EncodeCache) -> Pipeline:
    """The shipped rebuild path (GC policy included), with the client connected."""
    snapshots = SnapshotCache()
    snapshots.stream_opened(CLIENT_ID, {"id": CLIENT_ID})
    p = Pipeline(store, snapshots, issuer=ISSUER)
    p.encoder = cache
    return p


ISSUER: Issuer | None = None
"""`--mtls`: the proxy gets a workload certificate, so mesh mTLS is in its config."""


def full_build(
    store: Store, cache: EncodeCache, p: Pipeline | None = None
) -> tuple[float, float, Any, Any]:
    p = p or pipeline(store, cache)
    p.rebuild()
    return p.stats.translate_s, p.stats.encode_s, p.mesh, p.cache.get(CLIENT_ID)


def per_type(mesh: ir.Mesh, proxy: ir.Proxy, limit: int) -> dict[str, dict[str, float]]:
    """Per resource: build the envoy-data-plane message, then encode it with the shipped
    encoder, `wire.encode` (µs). Endpoints are written at the wire level: all "build"."""

    def measure(items: list[Callable[[], Any]]) -> dict[str, float]:
        t0 = time.perf_counter()
        messages = [f() for f in items]
        t1 = time.perf_counter()
        sizes = [len(m if isinstance(m, bytes) else wire.encode(m)) for m in messages]
        t2 = time.perf_counter()
        n = len(items)
        return {
            "count": n,
            "build_us": (t1 - t0) / n * 1e6,
            "serialize_us": (t2 - t1) / n * 1e6,
            "total_us": (t2 - t0) / n * 1e6,
            "avg_bytes": sum(sizes) / n,
        }

    cs = view.visible_clusters(mesh, proxy)[:limit]
    vhs = view.outbound_virtual_hosts(mesh, proxy)[:limit]
    inbound = tuple(view.inbound_virtual_hosts(proxy))
    reps = 200
    return {
        "cluster (EDS)": measure([lambda c=c: clusters.outbound_cluster(c) for c in cs]),
        "endpoints (CLA, 3 eps)": measure(
            [lambda c=c: clusters.load_assignment(c.name, c.endpoints) for c in cs]
        ),
        "virtual host": measure(
            [lambda v=v: routes.virtual_host(v[0].name, v[1], v[2]) for v in vhs]
        ),
        "listener outbound (RDS)": measure([lambda: local.outbound_listener(proxy.ip)] * reps),
        "listener inbound": measure([lambda: local.inbound_listener(proxy.ip)] * reps),
        "inbound routes (RDS)": measure([lambda: local._inbound_routes(proxy, inbound)] * reps),
    }


def incremental(store: Store, cache: CountingCache, edits: int) -> dict[str, Any]:
    """Edit service 0's VirtualService (weights), re-translate with the warm cache."""
    p = pipeline(store, cache)
    p.rebuild()
    runs = []
    for e in range(edits):
        weights = (80, 20) if e % 2 == 0 else (90, 10)
        store.apply(workload.virtual_service(workload.EDITED, weights))
        hits, misses = cache.hits, cache.misses
        cache.missed = []
        gc_before = GC.total
        t_ir, t_envoy, _, _ = full_build(store, cache, p)
        swept = 0  # the pipeline sweeps the cache itself
        runs.append(
            {
                "translate_s": t_ir,
                "envoy_encode_s": t_envoy,
                "total_s": t_ir + t_envoy,
                "hits": cache.hits - hits,
                "misses": cache.misses - misses,
                "re_encoded": list(cache.missed),
                "swept": swept,
                "gc_s": GC.total - gc_before,
            }
        )
    return {
        "runs": runs,
        "median_translate_s": statistics.median(r["translate_s"] for r in runs),
        "median_envoy_encode_s": statistics.median(r["envoy_encode_s"] for r in runs),
        "median_total_s": statistics.median(r["total_s"] for r in runs),
        "median_gc_s": statistics.median(r["gc_s"] for r in runs),
    }


def mode_build(n: int, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "counts": workload.counts(n)}
    out["rss_after_imports_mib"] = proc_status()["VmRSS"]
    t0 = time.perf_counter()
    store = load_store(n)
    out["store_load_s"] = time.perf_counter() - t0
    gc.collect()
    out["rss_after_store_mib"] = proc_status()["VmRSS"]

    cache = CountingCache()
    t_ir, t_envoy, mesh, snapshot = full_build(store, cache)
    cache.sweep()
    gc.collect()
    mem = proc_status()
    out["rss_after_build_mib"] = mem["VmRSS"]
    out["resources"] = {
        t.rsplit(".", 1)[-1]: len(snapshot.resources(t)) for t in snapshot.type_urls()
    }
    route = snapshot.resources(snapshot_route_type(snapshot))
    out["route_config_bytes"] = sum(len(r.body) for r in route.values())
    first = {"translate_s": t_ir, "envoy_encode_s": t_envoy}

    runs = []
    for _ in range(repeat):
        gc.collect()
        gc_before = GC.total
        t_ir, t_envoy, _, _ = full_build(store, EncodeCache())
        runs.append({"translate_s": t_ir, "envoy_encode_s": t_envoy, "gc_s": GC.total - gc_before})
    out["full"] = {
        "first": first,
        "runs": runs,
        "median_translate_s": statistics.median(r["translate_s"] for r in runs),
        "median_envoy_encode_s": statistics.median(r["envoy_encode_s"] for r in runs),
        "median_total_s": statistics.median(r["translate_s"] + r["envoy_encode_s"] for r in runs),
    }
    out["per_type"] = per_type(mesh, client(mesh), limit=2000)
    out["incremental"] = incremental(store, cache, edits=max(repeat, 5))
    out["peak_rss_mib"] = proc_status()["VmHWM"]
    return out


def snapshot_route_type(snapshot: Any) -> str:
    return next(t for t in snapshot.type_urls() if t.endswith("RouteConfiguration"))


def mode_tracemalloc(n: int) -> dict[str, Any]:
    tracemalloc.start()
    store = load_store(n)
    gc.collect()
    store_current, store_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    cache = EncodeCache()
    _, _, mesh, snapshot = full_build(store, cache)
    cache.sweep()
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    top = tracemalloc.take_snapshot().statistics("filename")[:8]
    return {
        "n": n,
        "store_current_mib": store_current / 2**20,
        "store_peak_mib": store_peak / 2**20,
        "after_build_current_mib": current / 2**20,
        "build_peak_mib": peak / 2**20,
        "top_files": [{"file": str(s.traceback[0].filename), "mib": s.size / 2**20} for s in top],
        "_keep": len(mesh.clusters) + len(snapshot.type_urls()),
    }


def mode_profile(n: int, top: int) -> dict[str, Any]:
    # Warm pydantic's lazily built schemas on a small mesh first: they are a one-off
    # per process (see "first build" in the build mode), not part of steady state.
    full_build(load_store(20), EncodeCache())
    store = load_store(n)
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    t0 = time.perf_counter()
    full_build(store, EncodeCache())
    wall = time.perf_counter() - t0
    profiler.disable()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"profile-{n}.prof"
    profiler.dump_stats(str(path))
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = "/".join(Path(file).parts[-2:]) if file != "~" else ""
        rows.append(
            {"function": f"{short}:{line}({func})", "ncalls": nc, "tottime_s": tt, "cumtime_s": ct}
        )
    by_tot = sorted(rows, key=lambda r: -r["tottime_s"])[:top]
    by_cum = sorted(rows, key=lambda r: -r["cumtime_s"])[:top]
    return {
        "n": n,
        "profiled_wall_s": wall,
        "prof": str(path),
        "by_tottime": by_tot,
        "by_cumtime": by_cum,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--mode", choices=("build", "profile", "tracemalloc"), default="build")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--mtls", action="store_true", help="with mesh mTLS (a workload certificate)")
    args = p.parse_args()
    if args.mtls:
        global ISSUER
        now = datetime.datetime.now(datetime.UTC)
        ISSUER = Issuer(MeshCA.self_signed("cluster.local", now))
    if args.mode == "build":
        result = mode_build(args.n, args.repeat)
    elif args.mode == "profile":
        result = mode_profile(args.n, args.top)
    else:
        result = mode_tracemalloc(args.n)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

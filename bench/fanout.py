"""One VirtualService edit fanned out to many real Envoys (issue 11's first target:
every connected sidecar ACKed within p99 200 ms of the debounce window closing, 1,000
services and 100 Envoys; 1 s at 10,000 services).

In this one process, as bench/envoy_edit.py does: Store (bench/workload.py's N
services) → TimedPipeline (debounce 50 ms) → SnapshotCache → `serve()` ADS, with a
StatusRegistry subclass that times every send and ACK per node. E client pods
(`client/fanout-<k>`, all alike) each get a real Envoy started with the bootstrap local
mode gives a sidecar, its own loopback address (127.0.92.10 upwards) for its listeners
and admin, and `--concurrency 1` (one worker thread: 100 Envoys share 2 cores).

Decisions:
- Envoys start in batches of `--batch` (default 10), each batch waited for until every
  Envoy's admin `/ready` says LIVE, so 100 do not stampede the 2 cores or the xDS server.
- Memory is checked before starting them: E x an estimated Envoy RSS (full: ~70 MiB +
  0.18 MiB per service, 250 MiB at 1,000 measured; scoped: ~70 MiB + 4 KiB per service) plus the
  control plane must fit in MemAvailable less RESERVE_MIB (the machine is shared); the
  first batch's measured RSS (x 1.2) is checked again. Otherwise it refuses, saying why.
- Scoped (the default: Delta + on-demand VHDS): before the edits, one request through
  every Envoy to service 0 (three real echo backends: `v1-a`, `v1-b` in subset v1, `v2`)
  makes every Envoy fetch that virtual host, so the edit reaches all E. `--full`: no
  on-demand, each Envoy is sent the whole route table (SotW; `--delta`: Delta).
- One edit flips service 0's VirtualService 100/0 ↔ 0/100 (one unmeasured edit to
  100/0 first, so every measured edit starts from a known state and moves traffic).
- Per edit and Envoy, clocked from the rebuild start (the debounce window closed):
  the types whose snapshot version the rebuild changed for that Envoy (and that it was
  sent before) are the change; the Envoy is done when each of them, and every other
  type it was sent in this edit, is ACKed at the version last sent. (Scoped, the flip
  also swaps the subset cluster the virtual host routes to: the server sends Cluster,
  then its endpoints, and the VirtualHost only after the Cluster ACK, three responses
  per edit.) "send" is the Envoy's first response of the edit (the status `sent` hook,
  just before the gRPC write). A node whose snapshot did not change is counted as
  `unchanged`, not measured, and the JSON says so.
- Split: rebuild (Pipeline.rebuild: translate, then every proxy's IR → Envoy + encode
  = PushStats.encode_s; nothing is sent meanwhile, the event loop is busy), rebuild end
  → first / last send (the server's stream tasks walking the proxies), send → ACK per
  Envoy (gRPC write, Envoy applying the config, its ACK read back by this busy process:
  Envoy's own apply time is not separable from here; one Envoy alone gives its floor).
- After each edit settles, one request through every Envoy must reach the new subset's
  backend (an ACK alone does not prove a resource was applied): `traffic_moved`.
- p50/p99 are nearest-rank over all edits x Envoys; `all_acked` is per edit (the
  slowest Envoy). `--profile` runs cProfile over the measured edits (slower: its
  numbers are for where the time goes, not for the targets) and prints the top items;
  py-spy (`py-spy record --pid <this process> --format raw`) samples with less overhead.

    python bench/fanout.py --services 1000 --envoys 100 [--edits 10] [--full [--delta]]
        [--batch 10] [--profile]

JSON on stdout (bench/run.py's `worker()` protocol), a summary on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import http.client
import io
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import workload
from envoys import TimedPipeline, envoy_rss_mib, start_envoy, stop
from pilotfish_operator.store import Store
from pilotfish_operator.translate import Options, proxy_id
from pilotfish_xds import codec
from pilotfish_xds.bootstrap import bootstrap
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.server import serve
from pilotfish_xds.status import StatusRegistry

HERE = Path(__file__).resolve().parent
BACKENDS = {"v1-a": "127.0.91.11", "v1-b": "127.0.91.12", "v2": "127.0.91.13"}
RESERVE_MIB = 6144
"""Memory left for the machine's other users."""


def envoy_ip(k: int) -> str:
    return f"127.0.{92 + k // 200}.{10 + k % 200}"


def pod_name(k: int) -> str:
    return f"fanout-{k}"


def check_memory(envoys: int, per_envoy: float, services: int) -> None:
    need = envoys * per_envoy + 300 + 0.1 * services  # + the control plane
    meminfo = Path("/proc/meminfo").read_text().split()
    have = int(meminfo[meminfo.index("MemAvailable:") + 1]) / 1024 - RESERVE_MIB
    if need > have:
        raise SystemExit(
            f"refusing: {envoys} Envoys x {per_envoy:.0f} MiB + the control plane need "
            f"~{need:.0f} MiB; {have:.0f} MiB is available after leaving {RESERVE_MIB} MiB "
            "for the machine's other users"
        )


class FanoutStatus(StatusRegistry):
    """Times every send and ACK per (node, type) since `reset()`; inside `counting()`,
    also what each response carried (resources, bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self.acks: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self.carried: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self.sent_types: dict[str, set[str]] = {}
        self._sending: tuple[str, str] | None = None

    def reset(self) -> None:
        self.sends, self.acks, self.carried, self.sent_types = {}, {}, {}, {}

    def sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        self.sends.setdefault((node_id, type_url), []).append((time.monotonic(), version))
        self.sent_types.setdefault(node_id, set()).add(type_url)
        self._sending = (node_id, type_url)
        super().sent(node_id, type_url, version, nonce)

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """The stream encodes its response right after `sent()`, with no await between:
        the codec's two response functions are wrapped to count what they are given."""
        sotw, delta = codec.sotw_response, codec.delta_response

        def wrap(encode: Any) -> Any:
            def counted(type_url: str, version: str, nonce: str, resources: Any, *a: Any) -> bytes:
                resources = list(resources)
                body: bytes = encode(type_url, version, nonce, resources, *a)
                if self._sending is not None:
                    self.carried.setdefault(self._sending, []).append((len(resources), len(body)))
                    self._sending = None
                return body

            return counted

        codec.sotw_response, codec.delta_response = wrap(sotw), wrap(delta)
        try:
            yield
        finally:
            codec.sotw_response, codec.delta_response = sotw, delta

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        self.acks.setdefault((node_id, type_url), []).append((time.monotonic(), version))
        super().acked(node_id, type_url, version)

    def settled(self, node: str, changed: set[str]) -> tuple[float, float] | None:
        """(first send, last ACK) once every type in `changed` was sent in this edit and
        every type sent is ACKed at the version last sent; None until then."""
        first_send, last_ack = math.inf, 0.0
        for t in changed | self.sent_types.get(node, set()):
            sends = self.sends.get((node, t))
            if not sends:
                return None
            version = sends[-1][1]
            ack = next((at for at, v in self.acks.get((node, t), ()) if v == version), None)
            if ack is None:
                return None
            first_send, last_ack = min(first_send, sends[0][0]), max(last_ack, ack)
        return first_send, last_ack


def served_by(ip: str) -> str:
    """Which backend answers service 0 through the sidecar at `ip`."""
    conn = http.client.HTTPConnection(ip, 15001, timeout=30)
    try:
        conn.request("GET", "/", headers={"host": workload.host(workload.EDITED)})
        response = conn.getresponse()
        response.read()
        return response.getheader("x-served-by") or f"status {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return f"error {exc!r}"
    finally:
        conn.close()


def ready(ip: str) -> bool:
    try:
        with contextlib.closing(http.client.HTTPConnection(ip, 15000, timeout=2)) as conn:
            conn.request("GET", "/ready")
            return conn.getresponse().read().strip() == b"LIVE"
    except (OSError, http.client.HTTPException):
        return False


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1)."""
    xs = sorted(values)
    return xs[max(0, math.ceil(q * len(xs)) - 1)] if xs else None


def dist(values: list[float]) -> dict[str, float | None]:
    ms = [v * 1e3 for v in values]
    return {
        "n": len(ms),
        "p50_ms": pct(ms, 0.5),
        "p99_ms": pct(ms, 0.99),
        "max_ms": max(ms) if ms else None,
    }


def versions(cache: SnapshotCache, nodes: list[str]) -> dict[str, dict[str, str]]:
    out = {}
    for node in nodes:
        snap = cache.get(node)
        out[node] = {t: snap.version(t) for t in snap.type_urls()} if snap else {}
    return out


@dataclass
class Config:
    services: int
    envoys: int
    edits: int = 10
    full: bool = False
    delta: bool = False
    batch: int = 10
    profile: Path | None = None


@dataclass
class Mesh:
    store: Store
    pipeline: TimedPipeline
    cache: SnapshotCache
    status: FanoutStatus
    nodes: list[str]
    pool: ThreadPoolExecutor

    async def ask(self, fn: Any, ips: list[str]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(self.pool, fn, ip) for ip in ips)))


async def start_envoys(
    cfg: Config, mesh: Mesh, port: int, workdir: Path, procs: list[subprocess.Popen[bytes]]
) -> float:
    """Start every Envoy (into `procs`), a batch at a time; the seconds it took."""
    t0 = time.monotonic()
    for first in range(0, cfg.envoys, cfg.batch):
        batch = list(range(first, min(cfg.envoys, first + cfg.batch)))
        for k in batch:
            config = workdir / f"{pod_name(k)}.bootstrap.json"
            boot = bootstrap(
                mesh.nodes[k],
                namespace=workload.CLIENT_NS,
                pod=pod_name(k),
                labels={"app": "client"},
                xds_host="127.0.0.1",
                xds_port=port,
                admin_host=envoy_ip(k),
                delta=cfg.delta or not cfg.full,
            )
            config.write_text(json.dumps(boot))
            log = workdir / f"{pod_name(k)}.log"
            procs.append(start_envoy(config, log, "--concurrency", "1"))
        ips = [envoy_ip(k) for k in batch]
        deadline = time.monotonic() + 300
        while not all(await mesh.ask(ready, ips)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Envoys {ips} not LIVE within 300 s; see {workdir}")
            await asyncio.sleep(0.1)
        if first == 0:  # the first batch tells what an Envoy really takes
            rss = max(envoy_rss_mib(p.pid) for p in procs)
            check_memory(cfg.envoys - len(procs), rss * 1.2, cfg.services)
        print(f"  fanout: {len(procs)} Envoys LIVE", file=sys.stderr, flush=True)
    return time.monotonic() - t0


async def warm_up(mesh: Mesh, ips: list[str]) -> None:
    """One request through every Envoy to service 0 (scoped: fetches its virtual host)."""
    pending = ips
    for _ in range(10):
        answers = await mesh.ask(served_by, pending)
        pending = [ip for ip, who in zip(pending, answers, strict=True) if who not in BACKENDS]
        if not pending:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"service 0 not reachable through {pending}")


async def one_edit(
    mesh: Mesh, ips: list[str], weights: tuple[int, int], target: str
) -> dict[str, Any]:
    before = versions(mesh.cache, mesh.nodes)
    rebuilds = len(mesh.pipeline.rebuilds)
    mesh.status.reset()
    t_edit = time.monotonic()
    mesh.store.apply(workload.virtual_service(workload.EDITED, weights))
    while len(mesh.pipeline.rebuilds) == rebuilds:  # noqa: ASYNC110 - polling is the point
        await asyncio.sleep(0.001)
    start, end = mesh.pipeline.rebuilds[-1]
    stats = mesh.pipeline.stats
    after = versions(mesh.cache, mesh.nodes)
    changed: dict[str, set[str]] = {}
    for node in mesh.nodes:
        known = mesh.status.node(node).types  # types the node was sent before
        moved = {t for t, v in after[node].items() if before[node].get(t) != v and t in known}
        if moved:
            changed[node] = moved
    times: dict[str, tuple[float, float]] = {}
    deadline = time.monotonic() + 120
    while len(times) < len(changed) and time.monotonic() < deadline:
        for node, types in changed.items():
            if node not in times and (done := mesh.status.settled(node, types)) is not None:
                times[node] = done
        await asyncio.sleep(0.002)
    answers = await mesh.ask(served_by, ips)
    sends = [s for s, _ in times.values()]
    carried = [
        [c for t in types for c in mesh.status.carried.get((node, t), [])]
        for node, types in changed.items()
    ]
    return {
        "target": target,
        "changed_types": sorted({t.rsplit(".", 1)[-1] for ts in changed.values() for t in ts}),
        "unchanged": len(mesh.nodes) - len(changed),
        "measured": len(times),
        # Envoys sent at least one resource of a changed type (not just a new version).
        "carried": sum(any(n for n, _ in c) for c in carried),
        "bytes_sent": sum(b for c in carried for _, b in c),
        "responses": dict(
            collections.Counter(
                t.rsplit(".", 1)[-1] for (_, t), x in mesh.status.sends.items() for _ in x
            )
        ),
        "first_response_after_rebuild_end_s": min(
            (t for x in mesh.status.sends.values() for t, _ in x), default=end
        )
        - end,
        "edit_to_rebuild_start_s": start - t_edit,
        "rebuild_s": end - start,
        "translate_s": stats.translate_s,
        "proxies_encode_s": stats.encode_s,
        "proxies_built": stats.proxies,
        "first_send_after_rebuild_end_s": (min(sends) - end) if sends else None,
        "last_send_after_rebuild_end_s": (max(sends) - end) if sends else None,
        "ack_s": sorted(a - start for _, a in times.values()),
        "send_to_ack_s": sorted(a - s for s, a in times.values()),
        "all_acked_s": (max(a for _, a in times.values()) - start) if times else None,
        "traffic_moved": sum(who.startswith(target) for who in answers),
        "traffic_other": sorted({w for w in answers if not w.startswith(target)}),
    }


def profile_top(profile: cProfile.Profile, path: Path, count: int = 25) -> list[str]:
    profile.dump_stats(path)
    out = []
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(key).print_stats(count)
        lines = text.getvalue().splitlines()
        head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
        root = f"{HERE.parent}/"
        out += [f"by {key}:", *(x.replace(root, "") for x in lines[head : head + count + 1])]
    return out


@contextlib.contextmanager
def backends() -> Iterator[None]:
    echo = [sys.executable, "-m", "pilotfish_operator.local.echo"]
    procs = [
        subprocess.Popen(
            [*echo, "--name", name, "--listen", f"{ip}:{workload.PORT}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name, ip in BACKENDS.items()
    ]
    try:
        for b in procs:
            assert b.stdout is not None and b.stdout.readline().strip() == "ready"
        yield
    finally:
        for b in procs:
            stop(b)


async def run(cfg: Config, workdir: Path) -> dict[str, Any]:
    """The whole benchmark; the dict is what `main` prints."""
    check_memory(cfg.envoys, 70 + (0.18 if cfg.full else 0.004) * cfg.services, cfg.services)
    store = Store()
    objects = workload.objects(
        cfg.services, client_ip=envoy_ip(0), edited_backends=list(BACKENDS.values())
    )
    for obj in objects:
        if obj["kind"] != "Pod" or obj["metadata"]["name"] != workload.CLIENT_POD:
            store.apply(obj)
    for k in range(cfg.envoys):
        store.apply(workload.client_pod(envoy_ip(k), pod_name(k)))
    assert not store.errors(), store.errors()
    cache, status = SnapshotCache(), FanoutStatus()
    server, port = await serve("127.0.0.1:0", cache, status)
    options = Options(local=True, on_demand=not cfg.full)
    pipeline = TimedPipeline(store, cache, options, debounce=0.05, status=status)
    task = asyncio.create_task(pipeline.run())
    nodes = [proxy_id(workload.CLIENT_NS, pod_name(k)) for k in range(cfg.envoys)]
    mesh = Mesh(store, pipeline, cache, status, nodes, ThreadPoolExecutor(16))
    ips = [envoy_ip(k) for k in range(cfg.envoys)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        start_s = await start_envoys(cfg, mesh, port, workdir, procs)
        await warm_up(mesh, ips)
        await asyncio.sleep(1)  # EDS and the on-demand fetches settle
        plan = [("v1", (100, 0))] + [
            ("v2", (0, 100)) if k % 2 == 0 else ("v1", (100, 0)) for k in range(cfg.edits)
        ]
        profile = cProfile.Profile() if cfg.profile else None
        runs = []
        for k, (target, weights) in enumerate(plan):
            if profile is not None and k == 1:
                profile.enable()
            with status.counting():
                result = await one_edit(mesh, ips, weights, target)
            if k > 0:
                runs.append(result)
                print(
                    f"  fanout: edit {k}: all ACKed {result['all_acked_s'] * 1e3:.0f} ms, "
                    f"rebuild {result['rebuild_s'] * 1e3:.0f} ms, "
                    f"traffic moved {result['traffic_moved']}/{cfg.envoys}",
                    file=sys.stderr,
                    flush=True,
                )
            await asyncio.sleep(0.3)
        if profile is not None:
            profile.disable()
        rss = [envoy_rss_mib(p.pid) for p in procs]
        return {
            "services": cfg.services,
            "envoys": cfg.envoys,
            "mode": ("full-delta" if cfg.delta else "full") if cfg.full else "scoped",
            "edits": cfg.edits,
            "start_all_envoys_s": start_s,
            "envoy_rss_mib": {"median": statistics.median(rss), "max": max(rss)},
            "control_plane_rss_mib": envoy_rss_mib(os.getpid()),
            "nacks": status.nacks_total,
            "summary": summary(runs, cfg.envoys),
            "runs": runs,
            "profile": profile_top(profile, cfg.profile) if profile and cfg.profile else None,
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            stop(proc)
        mesh.pool.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop(grace=None)


def summary(runs: list[dict[str, Any]], envoys: int) -> dict[str, Any]:
    def med(key: str) -> float | None:
        xs = [r[key] * 1e3 for r in runs if r[key] is not None]
        return statistics.median(xs) if xs else None

    return {
        "rebuild_start_to_ack": dist([x for r in runs for x in r["ack_s"]]),
        "all_acked": dist([r["all_acked_s"] for r in runs if r["all_acked_s"] is not None]),
        "send_to_ack": dist([x for r in runs for x in r["send_to_ack_s"]]),
        "median_rebuild_ms": med("rebuild_s"),
        "median_translate_ms": med("translate_s"),
        "median_proxies_encode_ms": med("proxies_encode_s"),
        "median_first_send_after_rebuild_end_ms": med("first_send_after_rebuild_end_s"),
        "median_last_send_after_rebuild_end_ms": med("last_send_after_rebuild_end_s"),
        "measured": sum(r["measured"] for r in runs),
        "carried": sum(r["carried"] for r in runs),
        "median_bytes_sent": statistics.median(r["bytes_sent"] for r in runs) if runs else None,
        "expected": envoys * len(runs),
        "traffic_moved": sum(r["traffic_moved"] for r in runs),
        "responses_per_edit": runs[-1]["responses"] if runs else {},
    }


def report(out: dict[str, Any]) -> str:
    s = out["summary"]

    def d(name: str) -> str:
        x = s[name]
        return f"p50 {x['p50_ms']:.0f} / p99 {x['p99_ms']:.0f} / max {x['max_ms']:.0f} ms"

    lines = [
        f"{out['services']} services, {out['envoys']} Envoys ({out['mode']}), "
        f"{out['edits']} edits; measured {s['measured']}/{s['expected']} "
        f"(the change carried to {s['carried']}), "
        f"traffic moved {s['traffic_moved']}/{s['expected']}, NACKs {out['nacks']}",
        f"  rebuild start → Envoy ACKed:  {d('rebuild_start_to_ack')}",
        f"  per edit, all ACKed:          {d('all_acked')}",
        f"  rebuild (translate + proxies): {s['median_rebuild_ms']:.0f} ms "
        f"({s['median_translate_ms']:.0f} + {s['median_proxies_encode_ms']:.0f})",
        f"  rebuild end → first / last send: {s['median_first_send_after_rebuild_end_ms']:.0f}"
        f" / {s['median_last_send_after_rebuild_end_ms']:.0f} ms",
        f"  send → ACK per Envoy:         {d('send_to_ack')}; "
        f"{s['median_bytes_sent'] / 1024:.0f} KiB of the changed types sent per edit",
        f"  responses per edit: {s['responses_per_edit']}",
        f"  Envoy RSS median {out['envoy_rss_mib']['median']:.0f} MiB, control plane "
        f"{out['control_plane_rss_mib']:.0f} MiB; all Envoys LIVE in "
        f"{out['start_all_envoys_s']:.1f} s",
    ]
    return "\n".join(lines + (out["profile"] or []))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--envoys", type=int, default=100)
    p.add_argument("--edits", type=int, default=10)
    p.add_argument("--full", action="store_true", help="no on-demand: the whole route table")
    p.add_argument("--delta", action="store_true", help="with --full: Delta, not SotW")
    p.add_argument("--batch", type=int, default=10, help="Envoys started at a time")
    p.add_argument("--profile", action="store_true", help="cProfile the measured edits")
    args = p.parse_args()
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    prof = out_dir / f"fanout-{args.services}-{args.envoys}.prof" if args.profile else None
    cfg = Config(args.services, args.envoys, args.edits, args.full, args.delta, args.batch, prof)
    with tempfile.TemporaryDirectory(prefix="fanout-", dir=out_dir) as workdir, backends():
        result = asyncio.run(run(cfg, Path(workdir)))
    print(report(result), file=sys.stderr)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

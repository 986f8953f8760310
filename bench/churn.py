"""Endpoint churn: a Deployment rollout replacing every pod of one service, as the
sidecars that call it see it (issue 11: "a few merged pushes, not one per pod").

    python bench/churn.py [--pods 100] [--envoys 10] [--speed 1] [--mode scoped]
        [--services 100] [--rate 20] [--debounce S] [--max-delay S] [--seed 1]

JSON on stdout (bench/run.py's `worker()` protocol), a summary on stderr.

Set-up, in this process as bench/envoy_edit.py does it (its helpers): Store →
Pipeline (its defaults, the operator's: 100 ms quiet, 1 s at most) → SnapshotCache →
`serve()`; `--envoys` real Envoys (client pods `client-<k>`, local layout, no mTLS),
`--mode scoped` (local mode's default: Delta, on-demand virtual hosts), `full` (State
of the World, every service) or `full-delta`. The mesh: bench/workload.py's
`--services` services plus the rolled-out service `web.apps` (`--pods` replicas, each
a real listening socket: `bench/rollout.py --serve`). Every sidecar sends one
request to `web` first, so scoped sidecars have fetched it and its endpoint pushes
reach them.

The rollout (bench/rollout.py): Kubernetes' defaults (maxSurge and maxUnavailable
25 %), new pods scheduled in 0.2-0.5 s, Ready 1-3 s later, old pods drain 1-1.5 s
after they start terminating (a preStop hook's time) and then stop listening; every
Pod and EndpointSlice write applied to the Store when the API server would show it
(times divided by `--speed`), as the operator's watch handlers apply them. A prober
process (`--probe`, its own process: no GIL shared with the control plane) sends
`--rate` requests a second through every sidecar throughout and counts statuses.

Measured (all over the rollout, from its first write until every sidecar has ACKed
the final endpoints):
- responses the control plane wrote to each sidecar, per type (EDS = pushes of the
  churn; CDS, LDS, RDS, VHDS should be none: only endpoints changed), and rebuilds;
- staleness: for each write that changed an EndpointSlice, the time until every
  sidecar had ACKed endpoints built from it (median, p90, max); the last of them is
  "last pod change → every sidecar ACKed";
- the prober's statuses (a 5xx is a user-visible failure), which pods answered;
- the final endpoints in every Envoy (admin /clusters): exactly the new pods, healthy.

Decisions. The control plane runs in this process (not `pilotfish local`) so writes
land in the Store at their exact times and every response is counted per sidecar;
local mode has no EndpointSlices (it derives endpoints from pods), the operator path
has both, so both kinds are written as the operator's watch handlers apply them (a
Pod write that changes no endpoint costs a rebuild and sends nothing). The service's
pods are not injected (100 more Envoys would swamp 2 cores; the clients' view is what
is measured). A gone pod refuses connections, so a sidecar still holding it fails
over only by retrying; stale endpoints show as 5xx. Found with this benchmark: with
the Pipeline's former `max_delay` of 10 s the rollout never left the store quiet for
100 ms, so sidecars held endpoints of pods already gone for up to 4.5 s (9 % of
requests failed); the bound is now 1 s (pipeline.py).
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
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import workload
from envoy_edit import HERE
from envoys import TimedPipeline, TimedStatus, start_envoy, stop
from pilotfish_operator.store import Store
from pilotfish_operator.translate import Options, proxy_id
from pilotfish_xds import types
from pilotfish_xds.bootstrap import bootstrap
from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.server import serve
from rollout import Rollout, Step

CLIENT_NS = "client"
SUBNET = "127.0.78"
WEB_CLUSTER = "outbound|8080||web.apps.svc.cluster.local"


def client_ip(k: int) -> str:
    return f"{SUBNET}.{10 + k}"


class CountingStatus(TimedStatus):
    """Every response written and every ACK, with the node and when."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[tuple[float, str, str]] = []
        self.node_acks: dict[tuple[str, str], float] = {}
        """(node, EDS version) → when first ACKed."""

    def sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        self.sends.append((time.monotonic(), node_id, type_url))
        super().sent(node_id, type_url, version, nonce)

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        if type_url == types.ENDPOINT:
            self.node_acks.setdefault((node_id, version), time.monotonic())
        super().acked(node_id, type_url, version)


# --- the prober (its own process) ----------------------------------------------------


def probe(proxies: list[str], host: str, rate: float) -> None:
    """`--probe`: `rate` GETs a second through each proxy (one thread and kept-alive
    connection each) until stdin closes; then one JSON line of what came back."""
    stop_at = threading.Event()
    statuses: Counter[str] = Counter()
    served: Counter[str] = Counter()
    failures: list[tuple[float, str, str]] = []
    lock = threading.Lock()

    def run(proxy: str) -> None:
        ip, port = proxy.rsplit(":", 1)
        conn = http.client.HTTPConnection(ip, int(port), timeout=5)
        next_at = time.monotonic()
        while not stop_at.is_set():
            try:
                conn.request("GET", "/", headers={"host": host})
                response = conn.getresponse()
                body = response.read()
                code, who = str(response.status), response.getheader("x-served-by") or ""
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(ip, int(port), timeout=5)
                code, who, body = "error", "", repr(exc).encode()
            with lock:
                statuses[code] += 1
                served[who.rsplit(".", 2)[0] if who else "-"] += 1
                if code != "200" and len(failures) < 20:
                    failures.append((time.monotonic(), proxy, f"{code} {body[:120]!r}"))
            next_at += 1 / rate
            stop_at.wait(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in proxies]
    for t in threads:
        t.start()
    print("ready", flush=True)
    sys.stdin.read()
    stop_at.set()
    for t in threads:
        t.join(10)
    print(json.dumps({"statuses": statuses, "served_by": served, "failures": failures}))


# --- the control plane side ---------------------------------------------------------


def get(ip: str, path: str, host: str | None = None) -> tuple[int, str]:
    """GET through a sidecar's outbound port (with `host`) or from its admin."""
    if host is None:
        url, headers = f"http://{ip}:15000{path}", {}
    else:
        url, headers = f"http://{ip}:15001{path}", {"host": host}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, r.read().decode()
    except OSError as exc:
        return getattr(exc, "code", 0) or 0, str(exc)


def healthy_hosts(ip: str) -> set[str]:
    """The addresses Envoy holds as healthy for `web` (admin /clusters)."""
    _, text = get(ip, "/clusters")
    out = set()
    for line in text.splitlines():
        if line.startswith(WEB_CLUSTER + "::") and line.endswith("::health_flags::healthy"):
            out.add(line.split("::")[1].rsplit(":", 1)[0])
    return out


async def fetched(ip: str, host: str, limit: float = 120) -> None:
    """Until a request to `host` through the sidecar at `ip` is answered (a scoped
    sidecar fetches the service on that first request)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, _ = await asyncio.to_thread(get, ip, "/", host)
        if status == 200:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"sidecar {ip} never reached {host}")


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rollout = Rollout(args.pods, seed=args.seed)
    before = rollout.objects()
    steps = rollout.timeline()  # moves `rollout` to the end state
    store = Store()
    for obj in workload.objects(args.services):
        if obj["kind"] != "Pod" or obj["metadata"]["name"] != workload.CLIENT_POD:
            store.apply(obj)
    clients = [proxy_id(CLIENT_NS, f"client-{k}") for k in range(args.envoys)]
    for k in range(args.envoys):
        store.apply(
            workload.client_pod(client_ip(k))
            | {
                "metadata": {
                    "name": f"client-{k}",
                    "namespace": CLIENT_NS,
                    "labels": {"app": "client"},
                }
            }
        )
    store.apply(workload.namespace(rollout.namespace, injected=False))
    for obj in before:
        store.apply(obj)
    assert not store.errors(), store.errors()

    cache, status = SnapshotCache(), CountingStatus()
    server, port = await serve("127.0.0.1:0", cache, status)
    scoped = args.mode == "scoped"
    pipeline = GenerationPipeline(
        store,
        cache,
        Options(local=True, on_demand=scoped),
        status=status,
        **{k: v for k, v in (("debounce", args.debounce), ("max_delay", args.max_delay)) if v},
    )
    task = asyncio.create_task(pipeline.run())
    pods_app = subprocess.Popen(  # noqa: ASYNC220 - set-up, before anything is timed
        [sys.executable, str(HERE / "rollout.py"), "--serve", str(rollout.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    envoys: list[subprocess.Popen[bytes]] = []
    prober: asyncio.subprocess.Process | None = None
    assert pods_app.stdin is not None and pods_app.stdout is not None

    def pods_command(*lines: str) -> None:
        assert pods_app.stdin is not None
        pods_app.stdin.write("".join(f"{line}\n" for line in lines))
        pods_app.stdin.flush()

    try:
        pods_command(*(f"up {ip}" for ip in rollout.old_ips()), "sync")
        assert pods_app.stdout.readline().strip() == "ok"
        for k, node in enumerate(clients):
            config = workdir / f"{node}.json"
            config.write_text(
                json.dumps(
                    bootstrap(
                        node,
                        namespace=CLIENT_NS,
                        pod=f"client-{k}",
                        labels={"app": "client"},
                        xds_host="127.0.0.1",
                        xds_port=port,
                        admin_host=client_ip(k),
                        delta=args.mode != "full",
                    )
                )
            )
            envoys.append(start_envoy(config, workdir / f"{node}.log"))
        await asyncio.gather(*(fetched(client_ip(k), rollout.host) for k in range(args.envoys)))
        prober = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--probe",
            ",".join(f"{client_ip(k)}:15001" for k in range(args.envoys)),
            "--host",
            rollout.host,
            "--rate",
            str(args.rate),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert prober.stdin is not None and prober.stdout is not None
        assert (await prober.stdout.readline()).strip() == b"ready"
        await asyncio.sleep(1.0)  # settled: nothing in flight before the rollout

        sends_before, rebuilds_before = len(status.sends), len(pipeline.rebuilds)
        applied = await play(steps, store, pods_command, args.speed)
        while pipeline.built_generation < store.generation:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        final = await all_acked(cache, status, clients, limit=60)
        await asyncio.sleep(1.0)  # anything still trickling in is counted too
        prober.stdin.close()
        probed = json.loads((await asyncio.wait_for(prober.stdout.readline(), 30)).decode())
        ends = [healthy_hosts(client_ip(k)) for k in range(args.envoys)]
        new_ips = {p.ip for p in rollout.pods.values()}
        return report(
            args,
            steps,
            applied,
            pipeline,
            rebuilds_before,
            status.sends[sends_before:],
            final,
            status,
            clients,
            probed,
            sum(1 for e in ends if e == new_ips),
        )
    finally:
        if prober is not None and prober.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                prober.kill()
            await prober.wait()
        for proc in envoys:
            stop(proc)
        stop(pods_app)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop(grace=None)


async def play(
    steps: list[Step], store: Store, pods_command: Any, speed: float
) -> list[tuple[float, int, bool]]:
    """Apply each step at its time; (when, store generation after it, whether an
    EndpointSlice changed) per step."""
    t0 = time.monotonic()
    out = []
    for step in steps:
        await asyncio.sleep(max(0.0, t0 + step.t / speed - time.monotonic()))
        if step.up or step.down:
            pods_command(*(f"up {ip}" for ip in step.up), *(f"down {ip}" for ip in step.down))
        for obj in step.apply:
            store.apply(obj)
        for key in step.delete:
            store.delete(key)
        slices = any(o["kind"] == "EndpointSlice" for o in step.apply) or any(
            k[0] == "EndpointSlice" for k in step.delete
        )
        out.append((time.monotonic(), store.generation, slices))
    return out


async def all_acked(
    cache: SnapshotCache, status: CountingStatus, clients: list[str], limit: float
) -> dict[str, str]:
    """Each client's final EDS version, once every client has ACKed its own."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        versions = {}
        for node in clients:
            snap = cache.get(node)
            versions[node] = snap.version(types.ENDPOINT) if snap else ""
        if all((n, v) in status.node_acks for n, v in versions.items()):
            return versions
        await asyncio.sleep(0.01)
    raise RuntimeError("not every sidecar ACKed the final endpoints in time")


class GenerationPipeline(TimedPipeline):
    """Also records, per rebuild, the store generation it built and each proxy's EDS
    version (to tell when a given write reached a sidecar)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.built: list[tuple[float, int, dict[str, str]]] = []

    def rebuild(self) -> None:
        generation = self.store.generation
        super().rebuild()
        versions = {}
        for node in self.cache.connected():
            snap = self.cache.get(node)
            if snap is not None:
                versions[node] = snap.version(types.ENDPOINT)
        self.built.append((self.rebuilds[-1][0], generation, versions))


def staleness(
    applied: list[tuple[float, int, bool]],
    built: list[tuple[float, int, dict[str, str]]],
    status: CountingStatus,
    clients: list[str],
) -> list[float]:
    """For each write that changed an EndpointSlice: seconds until every sidecar had
    ACKed endpoints built from it (or from a later write)."""
    out = []
    for when, generation, slices in applied:
        if not slices:
            continue
        later = [b for b in built if b[1] >= generation]
        if not later:
            continue
        worst = 0.0
        for node in clients:
            acks = [
                t
                for start, _, versions in later
                if (t := status.node_acks.get((node, versions.get(node, "")))) is not None
                and t >= start
            ]
            worst = max(worst, (min(acks) if acks else float("inf")) - when)
        out.append(worst)
    return out


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "median": statistics.median(values) if values else None,
        "p90": pct(values, 90),
        "max": max(values) if values else None,
    }


def report(
    args: argparse.Namespace,
    steps: list[Step],
    applied: list[tuple[float, int, bool]],
    pipeline: GenerationPipeline,
    rebuilds_before: int,
    sends: list[tuple[float, str, str]],
    final: dict[str, str],
    status: CountingStatus,
    clients: list[str],
    probed: dict[str, Any],
    correct: int,
) -> dict[str, Any]:
    per_node: dict[str, Counter[str]] = {n: Counter() for n in clients}
    for _, node, type_url in sends:
        if node in per_node:
            per_node[node][type_url.rsplit(".", 1)[-1]] += 1
    eds = [c["ClusterLoadAssignment"] for c in per_node.values()]
    others: Counter[str] = Counter()
    for c in per_node.values():
        others.update({t: n for t, n in c.items() if t != "ClusterLoadAssignment"})
    last_write = applied[-1][0]
    done = max(status.node_acks[(n, v)] for n, v in final.items())
    stale = staleness(applied, pipeline.built[rebuilds_before:], status, clients)
    statuses = probed["statuses"]
    return {
        "mode": args.mode,
        "pods": args.pods,
        "envoys": args.envoys,
        "services": args.services,
        "speed": args.speed,
        "debounce_s": pipeline.debounce,
        "max_delay_s": pipeline.max_delay,
        "rollout": {
            "duration_s": steps[-1].t / args.speed,
            "writes": len(applied),
            "pod_writes": sum(1 for s in steps for o in s.apply if o["kind"] == "Pod")
            + sum(1 for s in steps for k in s.delete if k[0] == "Pod"),
            "slice_writes": sum(1 for *_, slices in applied if slices),
        },
        "rebuilds": len(pipeline.rebuilds) - rebuilds_before,
        "eds_responses_per_sidecar": {
            "min": min(eds),
            "median": statistics.median(eds),
            "max": max(eds),
        },
        "other_responses_total": dict(others),
        "last_write_to_all_acked_s": done - last_write,
        "staleness_s": summary(stale),
        "requests": sum(statuses.values()),
        "statuses": statuses,
        "served_by": probed["served_by"],
        "failures": probed["failures"],
        "sidecars_with_exactly_the_new_pods": correct,
    }


def human(r: dict[str, Any]) -> str:
    eds, stale = r["eds_responses_per_sidecar"], r["staleness_s"]
    errors = {k: v for k, v in r["statuses"].items() if k != "200"}
    return "\n".join(
        [
            f"rollout of {r['pods']} pods ({r['mode']}, {r['envoys']} sidecars, "
            f"{r['services']} other services, speed {r['speed']}): "
            f"{r['rollout']['duration_s']:.1f} s, {r['rollout']['writes']} writes "
            f"({r['rollout']['slice_writes']} EndpointSlice), debounce "
            f"{r['debounce_s'] * 1e3:.0f} ms / max {r['max_delay_s']:.1f} s",
            f"  rebuilds {r['rebuilds']}; EDS responses per sidecar "
            f"{eds['min']}-{eds['max']} (median {eds['median']}); "
            f"other responses {r['other_responses_total'] or 'none'}",
            f"  EndpointSlice write → every sidecar ACKed: median {stale['median']:.2f} s, "
            f"p90 {stale['p90']:.2f} s, max {stale['max']:.2f} s; last write → all ACKed "
            f"{r['last_write_to_all_acked_s']:.2f} s",
            f"  requests {r['requests']}, not 200: {errors or 'none'}; served by "
            f"{dict(r['served_by'])}; sidecars ending with exactly the new pods: "
            f"{r['sidecars_with_exactly_the_new_pods']}/{r['envoys']}",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--envoys", type=int, default=10)
    p.add_argument("--speed", type=float, default=1.0, help="rollout time compression")
    p.add_argument("--mode", choices=("scoped", "full", "full-delta"), default="scoped")
    p.add_argument("--services", type=int, default=100, help="other services in the mesh")
    p.add_argument("--rate", type=float, default=20, help="requests/s through each sidecar")
    p.add_argument("--debounce", type=float, help="default: the Pipeline's")
    p.add_argument("--max-delay", type=float, help="default: the Pipeline's")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--host", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        return probe(args.probe.split(","), args.host, args.rate)
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="churn-", dir=out_dir) as workdir:
        result = asyncio.run(run(args, Path(workdir)))
    print(human(result), file=sys.stderr)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

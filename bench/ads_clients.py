"""A control plane with many connected proxies: simulated Delta ADS sidecars (bench/
ads_sim.py) against the real server, the control plane in a process of its own.

    python bench/ads_clients.py --services 10000 --clients 1000 [--nack-fraction 0]
        [--edits 5] [--idle 30] [--client-procs 1] [--profile FILE]

JSON on stdout (the other bench scripts' protocol), a summary on stderr.

Decisions:
- Three roles, three kinds of process: this orchestrator; the control plane (`--role
  server`: Store → Pipeline → SnapshotCache → `serve()`, so its RSS and CPU from /proc
  are its own); the proxies (`--role clients`, one asyncio process by default, each
  proxy its own gRPC channel and TCP connection). They talk over stdin/stdout in JSON
  lines; times are `time.monotonic()` (CLOCK_MONOTONIC, one clock for every process
  of a Linux machine).
- The control plane is configured as the operator's default: cluster mode (iptables
  listeners), scoped sidecars (on-demand VHDS, Delta), workload certificates from a
  mesh CA (so SDS and mesh mTLS are in the config), debounce 0.1 s. The xDS channel
  is plaintext (no TLS, no token check): 1,000 TLS sessions would cost the simulated
  proxies more than the control plane.
- The mesh: bench/workload.py's N services, plus the proxies' own pods: P pods of 10
  Deployments (labels and service account shared per Deployment, as a ReplicaSet's
  pods are) in two injected namespaces, distinct names and IPs (127.200.x.y). They
  call, and are not, services.
- Sequence: every proxy connects at once (a restarted control plane: the fleet
  reconnects), time to every proxy's initial config ACKed; then every proxy fetches
  service 0's virtual host, as its on_demand filter does on a first request; RSS;
  `--edits` edits of service 0's VirtualService (weights 90/10 ↔ 80/20), each timed
  from the edit and from the rebuild's start (the debounce window closed) until every
  proxy has ACKed the virtual host carrying it; then CPU over `--idle` seconds.
- Where an edit's time goes: rebuild (translate; every proxy's snapshot, "envoy"),
  first and last response written (the server's `StatusRegistry.sent`, just before the
  write), last ACK written by a proxy. `--nack-fraction` proxies reject the edit: the
  server must record it, keep the others converging and not send it again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import workload
from envoy_edit import TimedPipeline, TimedStatus

HERE = Path(__file__).resolve().parent
DEPLOYMENTS = 10
FLEET_NAMESPACES = ("fleet-a", "fleet-b")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the proxies' pods ---------------------------------------------------------------


def fleet(count: int) -> list[dict[str, Any]]:
    """`count` pods of DEPLOYMENTS Deployments, round robin; deterministic."""
    out = []
    for i in range(count):
        d = i % DEPLOYMENTS
        ns = FLEET_NAMESPACES[d % len(FLEET_NAMESPACES)]
        rs = f"client-{d}-{7000 + d:x}"
        labels = {"app": f"client-{d}", "version": "v1", "pod-template-hash": f"{7000 + d:x}"}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{rs}-{i:05x}",
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "ReplicaSet",
                            "name": rs,
                            "uid": f"uid-{rs}",
                            "controller": True,
                        }
                    ],
                },
                "spec": {
                    "serviceAccountName": f"client-{d}",
                    "containers": [{"name": "app", "ports": [{"containerPort": 9000}]}],
                },
                "status": {"podIP": f"127.{200 + i // 65536}.{i // 256 % 256}.{i % 256}"},
            }
        )
    return out


def node_bytes(pod: dict[str, Any], port: int) -> bytes:
    """The Node a sidecar of `pod` sends: what its bootstrap says."""
    from envoy_data_plane.envoy.config.core.v3 import Node
    from envoy_data_plane.google.protobuf import Struct

    from pilotfish_operator.translate import proxy_id
    from pilotfish_operator.translate.services import workload_from
    from pilotfish_xds.bootstrap import bootstrap

    meta = pod["metadata"]
    ns, name, labels = meta["namespace"], meta["name"], meta["labels"]
    sa = pod["spec"]["serviceAccountName"]
    identity = f"spiffe://cluster.local/ns/{ns}/sa/{sa}"
    owners = [("ReplicaSet", meta["ownerReferences"][0]["name"])]
    node = bootstrap(
        proxy_id(ns, name),
        namespace=ns,
        pod=name,
        labels=labels,
        xds_host="127.0.0.1",
        xds_port=port,
        delta=True,
        workload=workload_from(name, ns, labels, owners, identity),
    )["node"]
    message = Node(
        id=node["id"], cluster=node["cluster"], metadata=Struct.from_dict(node["metadata"])
    )
    return bytes(message)


# --- small helpers ---------------------------------------------------------------------


def proc_stats(pid: int) -> dict[str, float]:
    """RSS, peak RSS (MiB) and CPU seconds (user + system, every thread) of `pid`."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "rss_mib": int(status["VmRSS"].split()[0]) / 1024,
        "hwm_mib": int(status["VmHWM"].split()[0]) / 1024,
        "cpu_s": (int(fields[11]) + int(fields[12])) / CLK_TCK,
    }


def dist(values: list[float]) -> dict[str, float | None]:
    """p50 / p99 / max (seconds) and how many."""
    xs = sorted(values)
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    p99 = xs[min(len(xs) - 1, max(0, round(0.99 * len(xs)) - 1))]
    return {"n": len(xs), "p50": statistics.median(xs), "p99": p99, "max": xs[-1]}


async def read_line() -> str:
    return await asyncio.to_thread(sys.stdin.readline)


def reply(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --- role: control plane ---------------------------------------------------------------


class CpuTimedPipeline(TimedPipeline):
    """Also the rebuild's CPU time: on a shared machine wall time includes waiting for
    a core, CPU time is the work."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cpu_s = 0.0

    def rebuild(self) -> None:
        t0 = time.process_time()
        super().rebuild()
        self.cpu_s = time.process_time() - t0


class FleetStatus(TimedStatus):
    """TimedStatus plus when each response was sent and each NACK arrived, and counts
    per (type, version) so waiting for 1,000 ACKs is not a walk over 1,000 nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[tuple[float, str, str]] = []
        self.nack_times: list[tuple[float, str, str]] = []
        self.answers: dict[tuple[str, str], int] = {}

    def sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        self.sends.append((time.monotonic(), type_url, version))
        super().sent(node_id, type_url, version, nonce)

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        self.answers[type_url, version] = self.answers.get((type_url, version), 0) + 1
        super().acked(node_id, type_url, version)

    def nacked(self, node_id: str, type_url: str, version: str, message: str) -> None:
        self.nack_times.append((time.monotonic(), type_url, version))
        self.answers[type_url, version] = self.answers.get((type_url, version), 0) + 1
        super().nacked(node_id, type_url, version, message)


async def serve_role(args: argparse.Namespace) -> None:
    import logging

    from pilotfish_operator.security.ca import MeshCA
    from pilotfish_operator.security.issuer import Issuer
    from pilotfish_operator.security.pki import utcnow
    from pilotfish_operator.store import Store
    from pilotfish_operator.translate import Options
    from pilotfish_xds.cache import SnapshotCache
    from pilotfish_xds.server import serve

    logging.basicConfig(level=logging.WARNING)  # a NACK is logged per proxy: expected here
    logging.getLogger("pilotfish_xds.status").setLevel(logging.ERROR)
    t0 = time.monotonic()
    store = Store()
    for obj in workload.objects(args.services):
        store.apply(obj)
    for name in FLEET_NAMESPACES:
        store.apply(workload.namespace(name, injected=True))
    for pod in fleet(args.clients):
        store.apply(pod)
    assert not store.errors(), store.errors()
    loaded = time.monotonic()
    cache, status = SnapshotCache(), FleetStatus()
    server, port = await serve("127.0.0.1:0", cache, status)
    issuer = Issuer(MeshCA.self_signed("cluster.local", utcnow())) if args.mtls else None
    options = Options(local=False, on_demand=True)
    pipeline = CpuTimedPipeline(
        store, cache, options, debounce=args.debounce, issuer=issuer, status=status
    )
    task = asyncio.create_task(pipeline.run())
    while not pipeline.rebuilds:  # noqa: ASYNC110 - the first build, once
        await asyncio.sleep(0.01)
    reply(
        {
            "address": f"127.0.0.1:{port}",
            "store_load_s": loaded - t0,
            "first_build_s": pipeline.rebuilds[0][1] - pipeline.rebuilds[0][0],
            **proc_stats(os.getpid()),
        }
    )
    edits = 0
    try:
        while line := (await read_line()).split():
            if line[0] == "stats":
                reply(
                    {
                        **proc_stats(os.getpid()),
                        "connected": len(cache.connected()),
                        # one TCP connection per proxy, as with real sidecars
                        "distinct_peers": len(
                            {
                                s.peer
                                for n in cache.connected()
                                for s in status.node(n).streams.values()
                            }
                        ),
                        "nacks_total": status.nacks_total,
                        "pushes": {t.rsplit(".", 1)[-1]: n for t, n in status.pushes.items()},
                    }
                )
            elif line[0] == "edit":
                weights = (int(line[1]), int(line[2]))
                profile = cProfile.Profile() if args.profile and edits == 0 else None
                reply(await edit(store, pipeline, cache, status, weights, profile, args))
                edits += 1
            elif line[0] == "quit":
                break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop(grace=None)


async def edit(
    store: Any,
    pipeline: CpuTimedPipeline,
    cache: Any,
    status: FleetStatus,
    weights: tuple[int, int],
    profile: cProfile.Profile | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Service 0's VirtualService to `weights`; wait until every connected proxy has
    answered (ACK or NACK) the virtual hosts built from it."""
    from pilotfish_xds.types import VIRTUAL_HOST

    rebuilds = len(pipeline.rebuilds)
    before = dict(status.answers)  # going back to an earlier version: count anew
    pipeline.rebuilt.clear()
    if profile is not None:
        profile.enable()
    cpu0 = time.process_time()
    t_edit = time.monotonic()
    store.apply(workload.virtual_service(workload.EDITED, weights))
    while len(pipeline.rebuilds) == rebuilds:
        await pipeline.rebuilt.wait()
        pipeline.rebuilt.clear()
    start, end = pipeline.rebuilds[-1]
    nodes = list(cache.connected())
    wanted: dict[str, int] = {}
    offer = None
    for node in nodes:
        snap = cache.get(node)
        if snap is None:
            continue
        version = snap.version(VIRTUAL_HOST)
        wanted[version] = wanted.get(version, 0) + 1
        if offer is None and snap.on_demand is not None:
            table = snap.on_demand.tables[0]
            offer = snap.on_demand.resolve(f"{table}/{workload.host(workload.EDITED)}")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and any(  # noqa: ASYNC110 - counters, no event
        status.answers.get((VIRTUAL_HOST, v), 0) - before.get((VIRTUAL_HOST, v), 0) < n
        for v, n in wanted.items()
    ):
        await asyncio.sleep(0.005)
    done = time.monotonic()
    cpu = time.process_time() - cpu0
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.profile)
        stats = pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative")
        stats.print_stats(30)
    sends = [t for t, u, v in status.sends if t >= start and u == VIRTUAL_HOST and v in wanted]
    acks = [t for t, u, v in status.acks if t >= start and u == VIRTUAL_HOST and v in wanted]
    nacks = [t for t, u, v in status.nack_times if t >= start and v in wanted]
    return {
        "t_edit": t_edit,
        "rebuild_start": start,
        "rebuild_end": end,
        "translate_s": pipeline.stats.translate_s,
        "envoy_s": pipeline.stats.encode_s,
        "rebuild_cpu_s": pipeline.cpu_s,
        "edit_cpu_s": cpu,
        "proxies_built": pipeline.stats.proxies,
        "connected": len(nodes),
        "versions": wanted,
        "resource": [offer.resource.name, offer.resource.hash] if offer else None,
        "sends": sorted(sends),
        "acks_received": sorted(acks),
        "nacks_received": sorted(nacks),
        "all_answered": done < deadline,
        "other_sends": len([t for t, u, _ in status.sends if t >= start and u != VIRTUAL_HOST]),
    }


# --- role: orchestrator ----------------------------------------------------------------


class Child:
    """A role in a process of its own, spoken to in JSON lines."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, command: str) -> Any:
        self.send(command)
        return self.read()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.proc.args} exited ({self.proc.wait()})")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send("quit")
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ask_all(children: list[Child], command: str) -> list[Any]:
    for c in children:
        c.send(command)
    return [c.read() for c in children]


def run(args: argparse.Namespace) -> dict[str, Any]:
    me = str(HERE / "ads_clients.py")
    server_argv = [me, "--role", "server", "--services", str(args.services)]
    server_argv += ["--clients", str(args.clients), "--debounce", str(args.debounce)]
    server_argv += ["--timeout", str(args.timeout)] + (["--no-mtls"] if not args.mtls else [])
    server_argv += ["--profile", args.profile] if args.profile else []
    server = Child(server_argv)
    children: list[Child] = []
    watch = Watchdog(server.proc.pid, args.max_rss_mib, children)
    out: dict[str, Any] = {}
    try:
        ready = server.read()
        log(f"control plane ready: {json.dumps(ready)}")
        out.update(
            {
                "services": args.services,
                "clients": args.clients,
                "nack_fraction": args.nack_fraction,
                "control_plane_start": ready,
            }
        )
        for shard in range(args.client_procs):
            argv = [str(HERE / "ads_sim.py"), "--address", ready["address"]]
            argv += ["--clients", str(args.clients), "--shard", str(shard)]
            argv += ["--shards", str(args.client_procs), "--timeout", str(args.timeout)]
            argv += ["--nack-fraction", str(args.nack_fraction)]
            children.append(Child(argv))
        for c in children:
            assert c.read() == "ready"
        t0 = time.monotonic()
        answers = ask_all(children, "connect")
        converged = [t - t0 for a in answers for t in a["converged"]]
        errors = [e for a in answers for e in a["errors"]]
        out["connect"] = {
            "converged_s": dist(converged),
            "errors": errors[:5],
            # gRPC cancels a stream the server has not picked up within 30 s
            # (grpc.server_max_unrequested_time_in_server): a busy control plane loses
            # connecting proxies, which retry as Envoy does
            "proxies_reconnected": sum(a["reconnected"] for a in answers),
            "reconnect_reasons": [r for a in answers for r in a["reconnects"]][:5],
        }
        log(
            f"connect → initial config ACKed: {fmt(out['connect']['converged_s'])}; "
            f"{out['connect']['proxies_reconnected']} proxies had to reconnect"
        )
        if errors:
            raise RuntimeError(f"not every proxy converged: {errors[:3]}")
        t0 = time.monotonic()
        answers = ask_all(children, f"fetch {workload.host(workload.EDITED)}")
        out["fetch"] = {
            "latency_s": dist([x for a in answers for x in a["latency"]]),
            "all_fetched_s": max(a["last"] for a in answers) - t0,
            "errors": [e for a in answers for e in a["errors"]][:5],
        }
        log(f"fetch of service 0 by every proxy: {fmt(out['fetch']['latency_s'])}")
        if out["fetch"]["errors"]:
            raise RuntimeError(f"not every proxy fetched: {out['fetch']['errors']}")
        time.sleep(2)
        out["converged_stats"] = server.ask("stats")
        log(f"control plane converged: {json.dumps(out['converged_stats'])}")
        cpu = [proc_stats(c.proc.pid)["cpu_s"] for c in children]
        out["edits"] = [edit_once(server, children, k) for k in range(args.edits)]
        # the simulated proxies must not be the bottleneck: their CPU over the edits
        out["clients_cpu_s_in_edits"] = sum(
            proc_stats(c.proc.pid)["cpu_s"] - before
            for c, before in zip(children, cpu, strict=True)
        )
        out["edit_summary"] = summarize(out["edits"])
        time.sleep(5)
        before = proc_stats(server.proc.pid)
        clients_before = [proc_stats(c.proc.pid)["cpu_s"] for c in children]
        time.sleep(args.idle)
        after = proc_stats(server.proc.pid)
        clients_after = [proc_stats(c.proc.pid)["cpu_s"] for c in children]
        out["idle"] = {
            "seconds": args.idle,
            "cpu_s": after["cpu_s"] - before["cpu_s"],
            "cores": (after["cpu_s"] - before["cpu_s"]) / args.idle,
            "clients_cores": (sum(clients_after) - sum(clients_before)) / args.idle,
        }
        out["final_stats"] = server.ask("stats")
        return out
    except RuntimeError as exc:
        out["aborted"] = f"{exc}; {watch.why or 'see stderr'}"
        out["control_plane_last"] = watch.last
        log(f"aborted: {out['aborted']}")
        return out
    finally:
        watch.stop.set()
        for c in children:
            c.stop()
        server.stop()


class Watchdog(threading.Thread):
    """Logs the control plane's RSS and CPU every 10 s (a 10k/1,000 run is long) and
    stops it past `max_rss_mib`: the machine is shared, and where it stood is the
    result."""

    def __init__(self, pid: int, max_rss_mib: float, children: list[Child]) -> None:
        super().__init__(daemon=True)
        self.pid, self.max_rss_mib, self.children = pid, max_rss_mib, children
        self.stop = threading.Event()
        self.last: dict[str, float] = {}
        self.why = ""
        self.start()

    def run(self) -> None:
        t0 = time.monotonic()
        tick = 0
        while not self.stop.wait(1.0):
            try:
                fds = list(Path(f"/proc/{self.pid}/fd").iterdir())
                sockets = sum(os.readlink(f).startswith("socket:") for f in fds)
                self.last = {
                    **proc_stats(self.pid),
                    "sockets": sockets,  # ~ connected proxies
                    "at_s": time.monotonic() - t0,
                }
            except (OSError, KeyError):
                return
            tick += 1
            if tick % 10 == 0:
                log(f"  control plane: {json.dumps(self.last)}")
            if self.last["rss_mib"] > self.max_rss_mib:
                self.why = f"control plane RSS {self.last['rss_mib']:.0f} MiB > limit"
                log(self.why + ": stopping it")
                os.kill(self.pid, signal.SIGKILL)
                for c in self.children:  # their proxies would retry until the timeout
                    c.proc.kill()
                return


def edit_once(server: Child, children: list[Child], k: int) -> dict[str, Any]:
    weights = (80, 20) if k % 2 == 0 else (90, 10)
    cp = server.ask(f"edit {weights[0]} {weights[1]}")
    name, version = cp["resource"]
    answers = ask_all(children, f"answers {name} {version} {cp['t_edit']}")
    seen = [s for a in answers for s in a["seen"]]
    acked = [s["answered"] for s in seen if s and not s["nacked"]]
    nacked = [s["answered"] for s in seen if s and s["nacked"]]
    start, end, t_edit = cp["rebuild_start"], cp["rebuild_end"], cp["t_edit"]
    last = max(acked, default=end)
    run = {
        "weights": weights,
        "connected": cp["connected"],
        "acked": len(acked),
        "nacked": len(nacked),
        "missing": len([s for s in seen if not s]),
        "edit_to_rebuild_start_s": start - t_edit,
        "rebuild_s": end - start,
        "translate_s": cp["translate_s"],
        "envoy_s": cp["envoy_s"],
        "rebuild_cpu_s": cp["rebuild_cpu_s"],
        "edit_cpu_s": cp["edit_cpu_s"],
        "first_send_s": (cp["sends"][0] - start) if cp["sends"] else None,
        "last_send_s": (cp["sends"][-1] - start) if cp["sends"] else None,
        "last_ack_s": last - start,
        "last_ack_received_s": (cp["acks_received"][-1] - start) if cp["acks_received"] else None,
        "from_rebuild_start_s": dist([t - start for t in acked]),
        "from_edit_s": dist([t - t_edit for t in acked]),
        "nack_answered_s": dist([t - start for t in nacked]),
        "server_acks": len(cp["acks_received"]),
        "server_nacks": len(cp["nacks_received"]),
        "other_type_sends": cp["other_sends"],
        # after a NACK the server must not offer the rejected config again
        "vhds_responses_per_proxy": sorted({n for a in answers for n in a["responses_since"]}),
    }
    log(
        f"edit {k}: rebuild {run['rebuild_s'] * 1e3:.0f} ms, CPU "
        f"{run['rebuild_cpu_s'] * 1e3:.0f} ms (translate "
        f"{run['translate_s'] * 1e3:.0f}, snapshots {run['envoy_s'] * 1e3:.0f}); first send "
        f"+{(run['first_send_s'] or 0) * 1e3:.0f} ms, last send "
        f"+{(run['last_send_s'] or 0) * 1e3:.0f} ms, last ACK +{run['last_ack_s'] * 1e3:.0f} "
        f"ms; ACK from rebuild start {fmt(run['from_rebuild_start_s'])}; acked "
        f"{run['acked']} nacked {run['nacked']} missing {run['missing']}"
    )
    return run


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str, sub: str | None = None) -> float | None:
        xs = [r[key][sub] if sub else r[key] for r in runs]
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    return {
        "median_rebuild_s": med("rebuild_s"),
        "median_translate_s": med("translate_s"),
        "median_envoy_s": med("envoy_s"),
        "median_rebuild_cpu_s": med("rebuild_cpu_s"),
        "median_edit_cpu_s": med("edit_cpu_s"),
        "median_first_send_s": med("first_send_s"),
        "median_last_send_s": med("last_send_s"),
        "median_last_ack_s": med("last_ack_s"),
        "median_last_ack_received_s": med("last_ack_received_s"),
        "median_p50_from_rebuild_start_s": med("from_rebuild_start_s", "p50"),
        "median_p99_from_rebuild_start_s": med("from_rebuild_start_s", "p99"),
        "median_max_from_rebuild_start_s": med("from_rebuild_start_s", "max"),
        "median_max_from_edit_s": med("from_edit_s", "max"),
    }


def fmt(d: dict[str, Any]) -> str:
    if not d["n"]:
        return "none"
    return f"p50 {d['p50'] * 1e3:.0f} / p99 {d['p99'] * 1e3:.0f} / max {d['max'] * 1e3:.0f} ms"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--role", choices=("bench", "server"), default="bench")
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--nack-fraction", type=float, default=0.0)
    p.add_argument("--edits", type=int, default=5)
    p.add_argument("--idle", type=float, default=30.0)
    p.add_argument("--client-procs", type=int, default=1)
    p.add_argument("--debounce", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=300.0, help="per wait, seconds")
    p.add_argument("--no-mtls", dest="mtls", action="store_false")
    p.add_argument("--max-rss-mib", type=float, default=8000.0, help="stop the run past it")
    p.add_argument("--profile", help="cProfile the control plane's first edit into FILE")
    args = p.parse_args()
    if args.role == "server":
        asyncio.run(serve_role(args))
        return
    result = run(args)
    if "aborted" in result:
        json.dump(result, sys.stdout)
        sys.exit(1)
    s = result["edit_summary"]
    log(
        f"{args.services} services, {args.clients} proxies: RSS converged "
        f"{result['converged_stats']['rss_mib']:.0f} MiB (peak "
        f"{result['final_stats']['hwm_mib']:.0f}); edit → last ACK "
        f"{(s['median_last_ack_s'] or 0) * 1e3:.0f} ms after the rebuild start (median of "
        f"{args.edits}); idle {result['idle']['cores']:.4f} cores"
    )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

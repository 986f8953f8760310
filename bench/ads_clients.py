"""A control plane with many connected proxies: simulated Delta ADS sidecars (bench/
ads_sim.py) against the real server, the control plane in a process of its own.

    python bench/ads_clients.py --services 10000 --clients 1000 [--nack-fraction 0]
        [--edits 5] [--idle 30] [--client-procs 1] [--profile FILE] [--max-rss-mib 8000]

JSON on stdout (the other bench scripts' protocol), a summary on stderr.

Decisions:
- Three kinds of process: this orchestrator; the control plane (bench/ads_server.py:
  Store → Pipeline → SnapshotCache → `serve()`, so its RSS and CPU from /proc are its
  own); the proxies (bench/ads_sim.py, one asyncio process by default, each proxy its
  own gRPC channel and TCP connection; the wire level in bench/ads_wire.py). They
  talk over stdin/stdout in JSON lines; times are `time.monotonic()` (CLOCK_MONOTONIC,
  one clock for every process of a Linux machine).
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
- A proxy whose stream fails before its first config is in reconnects as Envoy does
  (jittered backoff); the count is reported. gRPC cancels a stream the server has
  not picked up within 30 s (`grpc.server_max_unrequested_time_in_server`), which a
  control plane whose event loop is busy building snapshots for that long causes.
- Past `--max-rss-mib` the control plane is stopped (a shared machine); the JSON then
  says where it stood (`aborted`, `control_plane_last`; progress went to stderr).
- One clients' process handles 1,000 proxies at ~0.25 ms of CPU per response and
  ACK; `--client-procs` spreads them when the control plane outruns it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import workload
from ads_server import proc_stats

HERE = Path(__file__).resolve().parent


def dist(values: list[float]) -> dict[str, float | None]:
    """p50 / p99 / max (seconds) and how many."""
    xs = sorted(values)
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    p99 = xs[min(len(xs) - 1, max(0, round(0.99 * len(xs)) - 1))]
    return {"n": len(xs), "p50": statistics.median(xs), "p99": p99, "max": xs[-1]}


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
    server_argv = [str(HERE / "ads_server.py"), "--services", str(args.services)]
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


def count_sockets(pid: int) -> int:
    """Open sockets of `pid` (about the connected proxies)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed since listed
            count += os.readlink(fd).startswith("socket:")
    return count


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
                sockets = count_sockets(self.pid)
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

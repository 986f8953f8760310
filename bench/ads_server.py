"""The control plane of bench/ads_clients.py, in a process of its own (its RSS and
CPU are its own): Store (bench/workload.py's N services plus the proxies' pods) →
Pipeline → SnapshotCache → `serve()`, configured as the operator's default (cluster
mode, scoped sidecars, workload certificates, debounce 0.1 s), plaintext xDS.

Commands on stdin, one JSON line answered on stdout each: `stats`; `edit W1 W2`
(service 0's VirtualService to weights W1/W2, answered once every connected proxy
has answered the virtual hosts built from it); `quit`. Also the proxies' pods
(`fleet`) and their Node (`node_bytes`), which the simulated sidecars announce.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import workload
from envoys import TimedPipeline, TimedStatus

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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--services", type=int, required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--debounce", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--no-mtls", dest="mtls", action="store_false")
    p.add_argument("--profile", help="cProfile the first edit into FILE")
    asyncio.run(serve_role(p.parse_args()))


if __name__ == "__main__":
    main()

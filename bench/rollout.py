"""A Deployment rollout as the Kubernetes API would show it: the Pod and EndpointSlice
writes, in time order, of replacing every pod of one service (deterministic per seed).

Model (what the Deployment, ReplicaSet, kubelet and EndpointSlice controllers do, with
the timings jittered):

- RollingUpdate, `maxSurge` and `maxUnavailable` as fractions of `replicas` (25 % each
  by default, Kubernetes' defaults; surge rounds up, unavailable down). At each
  change the Deployment controller scales the new ReplicaSet up while the pods it
  counts (terminating ones excluded, as Kubernetes does) are under replicas + surge,
  and terminates old pods while more than replicas - unavailable would stay Ready.
  So the first step creates 25 new pods and terminates 25 old, the next creates 25
  more, and from then on each new pod turning Ready lets one old pod go and one more
  new pod be created.
- A new pod: created (no node, no IP) → `schedule` s later bound and given its IP,
  Running but not Ready (its endpoint appears with `ready: false`) → `startup` s
  later Ready (the readiness probe passed; `ready: true`).
- An old pod: terminating (Ready false, its endpoint `ready: false, serving: true,
  terminating: true`) → `grace` s later gone (the app, having drained as a preStop
  hook lets it, exits; endpoint and pod deleted).
- The pods' apps (`python bench/rollout.py --serve PORT`): one listening socket per
  pod IP, opened when its container starts and closed when it is gone.
- EndpointSlices: at most 100 endpoints each (the controller's default); an endpoint
  stays in its slice, a new one goes to the first slice with room. Every pod change
  that changes a slice writes that slice once; changes at the same instant are one
  write (the controller syncs the service once for them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import math
import random
import sys
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str, str]
MAX_PER_SLICE = 100


@dataclass
class Step:
    """What the API server shows at `t` seconds into the rollout."""

    t: float
    apply: list[Obj] = field(default_factory=list)
    delete: list[Key] = field(default_factory=list)
    up: list[str] = field(default_factory=list)
    """IPs whose app starts listening (a new pod's container started)."""
    down: list[str] = field(default_factory=list)
    """IPs whose app exits (an old pod gone)."""


@dataclass
class _Pod:
    name: str
    ip: str
    new: bool
    state: str  # pending, starting, ready, terminating
    slice: int = -1


class Rollout:
    """The objects of one Deployment-backed service, and its rollout's timeline."""

    def __init__(
        self,
        replicas: int,
        *,
        name: str = "web",
        namespace: str = "apps",
        port: int = 8080,
        seed: int = 1,
        surge: float = 0.25,
        unavailable: float = 0.25,
        schedule: tuple[float, float] = (0.2, 0.5),
        startup: tuple[float, float] = (1.0, 3.0),
        grace: tuple[float, float] = (1.0, 1.5),
    ) -> None:
        self.replicas, self.name, self.namespace, self.port = replicas, name, namespace, port
        self.surge = math.ceil(replicas * surge)
        self.unavailable = math.floor(replicas * unavailable)
        self.rng = random.Random(seed)
        self.schedule, self.startup, self.grace = schedule, startup, grace
        self.pods: dict[str, _Pod] = {}
        self.slices: list[list[str]] = []
        self._created = 0
        self._order = 0
        for k in range(replicas):
            pod = _Pod(f"{name}-old-{k}", self.ip(False, k), False, "ready")
            self.pods[pod.name] = pod
            self._add_to_slice(pod)

    # --- addresses and objects ------------------------------------------------
    def ip(self, new: bool, k: int) -> str:
        return f"127.{81 if new else 80}.{k // 250}.{k % 250 + 1}"

    def old_ips(self) -> list[str]:
        return [self.ip(False, k) for k in range(self.replicas)]

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}:{self.port}"

    def objects(self) -> list[Obj]:
        """The service before the rollout: Service, Pods, EndpointSlices."""
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "selector": {"app": self.name},
                "ports": [{"name": "http", "port": self.port, "targetPort": self.port}],
            },
        }
        pods = [self._pod_object(p) for p in self.pods.values()]
        return [service, *pods, *(self._slice_object(i) for i in range(len(self.slices)))]

    def _pod_object(self, pod: _Pod) -> Obj:
        template = "new" if pod.new else "old"
        status: Obj = {"phase": "Pending", "conditions": []}
        if pod.state != "pending":
            ready = "True" if pod.state == "ready" else "False"
            status = {
                "phase": "Running",
                "podIP": pod.ip,
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "ContainersReady", "status": ready},
                    {"type": "Ready", "status": ready},
                ],
            }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.name,
                "namespace": self.namespace,
                "labels": {
                    "app": self.name,
                    "pod-template-hash": template,
                    "sidecar.pilotfish.io/inject": "false",
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{self.name}-{template}",
                        "uid": f"rs-{template}",
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "nodeName": None if pod.state == "pending" else "node-1",
                "containers": [{"name": "app", "ports": [{"containerPort": self.port}]}],
            },
            "status": status,
        }

    def _slice_object(self, i: int) -> Obj:
        def endpoint(pod: _Pod) -> Obj:
            ready = pod.state == "ready"
            terminating = pod.state == "terminating"
            return {
                "addresses": [pod.ip],
                "conditions": {
                    "ready": ready,
                    "serving": ready or terminating,
                    "terminating": terminating,
                },
                "nodeName": "node-1",
                "targetRef": {"kind": "Pod", "name": pod.name, "namespace": self.namespace},
            }

        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{self.name}-{i}",
                "namespace": self.namespace,
                "labels": {"kubernetes.io/service-name": self.name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": self.port, "protocol": "TCP"}],
            "endpoints": [endpoint(self.pods[n]) for n in self.slices[i]],
        }

    def _add_to_slice(self, pod: _Pod) -> None:
        for i, names in enumerate(self.slices):
            if len(names) < MAX_PER_SLICE:
                names.append(pod.name)
                pod.slice = i
                return
        self.slices.append([pod.name])
        pod.slice = len(self.slices) - 1

    # --- the timeline -----------------------------------------------------------
    def timeline(self) -> list[Step]:
        """Every write of the rollout, in time order; at the end only new pods are left,
        all Ready."""
        queue: list[tuple[float, int, str, str]] = []  # (t, order, transition, pod)
        steps: list[Step] = []
        t = 0.0
        while True:
            step, changed = Step(round(t, 6)), _Changed()
            while queue and queue[0][0] == t:
                _, _, what, name = heapq.heappop(queue)
                self._transition(what, self.pods[name], step, changed)
            for what, pod in self._reconcile():
                self._transition(what, pod, step, changed)
            step.apply += [self._pod_object(self.pods[n]) for n in sorted(changed.pods)]
            for i in sorted(changed.slices):
                if self.slices[i] or i == 0:
                    step.apply.append(self._slice_object(i))
                else:
                    step.delete.append(("EndpointSlice", self.namespace, f"{self.name}-{i}"))
            steps.append(step)
            for delay, what, name in changed.later:
                self._order += 1
                heapq.heappush(queue, (t + delay, self._order, what, name))
            if not queue:
                return steps
            t = queue[0][0]

    def _transition(self, what: str, pod: _Pod, step: Step, changed: _Changed) -> None:
        changed.pods.add(pod.name)
        if what == "create":
            changed.later.append((self.rng.uniform(*self.schedule), "started", pod.name))
            return
        if what == "started":
            pod.state = "starting"
            self._add_to_slice(pod)
            step.up.append(pod.ip)
            changed.later.append((self.rng.uniform(*self.startup), "ready", pod.name))
        elif what == "ready":
            pod.state = "ready"
        elif what == "terminate":
            pod.state = "terminating"
            changed.later.append((self.rng.uniform(*self.grace), "gone", pod.name))
        elif what == "gone":
            del self.pods[pod.name]
            self.slices[pod.slice].remove(pod.name)
            changed.pods.discard(pod.name)
            step.delete.append(("Pod", self.namespace, pod.name))
            step.down.append(pod.ip)
        changed.slices.add(pod.slice)

    def _reconcile(self) -> list[tuple[str, _Pod]]:
        """The Deployment and ReplicaSet controllers: scale the new ReplicaSet up within
        the surge, the old one down while enough pods stay available."""
        live = [p for p in self.pods.values() if p.state != "terminating"]
        new = [p for p in live if p.new]
        old = [p for p in live if not p.new]
        out: list[tuple[str, _Pod]] = []
        up = min(self.replicas - len(new), self.replicas + self.surge - len(live))
        for _ in range(max(0, up)):
            k = self._created
            self._created += 1
            pod = self.pods[f"{self.name}-new-{k}"] = _Pod(
                f"{self.name}-new-{k}", self.ip(True, k), True, "pending"
            )
            out.append(("create", pod))
        ready = len([p for p in live if p.state == "ready"])
        down = min(len(old), ready - (self.replicas - self.unavailable))
        # Old pods that are not Ready go first, then in order.
        for pod in sorted(old, key=lambda p: (p.state == "ready", p.name))[: max(0, down)]:
            out.append(("terminate", pod))
        return out


@dataclass
class _Changed:
    pods: set[str] = field(default_factory=set)
    slices: set[int] = field(default_factory=set)
    later: list[tuple[float, str, str]] = field(default_factory=list)
    """(delay, transition, pod) to schedule."""


def serve_pods(port: int) -> None:
    """`--serve PORT`: one listening socket per pod IP, opened and closed on command
    (`up IP`, `down IP` on stdin): a pod that is gone refuses connections, as its
    address would. Answers name the pod's IP."""

    async def main() -> None:
        servers: dict[str, asyncio.Server] = {}
        writers: dict[str, set[asyncio.StreamWriter]] = {}

        def handler(ip: str) -> Any:
            body = f"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-served-by: {ip}\r\n\r\nok\n"

            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writers.setdefault(ip, set()).add(writer)
                with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                    while True:
                        await reader.readuntil(b"\r\n\r\n")
                        writer.write(body.encode())
                        await writer.drain()
                writers.get(ip, set()).discard(writer)
                writer.close()

            return answer

        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while line := (await stdin.readline()).decode().split():
            command, ip = line[0], line[-1]
            if command == "up" and ip not in servers:
                servers[ip] = await asyncio.start_server(handler(ip), ip, port, backlog=256)
            elif command == "down" and ip in servers:
                servers.pop(ip).close()
                for w in writers.pop(ip, set()):
                    w.close()
            elif command == "sync":
                print("ok", flush=True)

    asyncio.run(main())


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--serve", type=int, required=True, help="the pods' port")
    serve_pods(p.parse_args().serve)

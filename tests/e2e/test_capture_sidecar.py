"""A Sidecar with iptables capture (netns.py: real Envoy as uid 1337 behind
`capture-init`'s rules, root required; the topology of test_capture.py): the workload's
Sidecar imports only the `db` service and sets REGISTRY_ONLY, and its ingress listener
sends the app port to a loopback endpoint."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from netns import PYTHON, Net, Procs, get, namespaces, require_root_and_netns, start_sidecar, tcp
from test_capture import _objects

pytestmark = pytest.mark.envoy

DB = "outbound|5432||db.shop.svc.cluster.local"
WEB = "outbound|80||web.shop.svc.cluster.local"


def _with_sidecar(net: Net) -> list[dict[str, Any]]:
    sidecar = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "client", "namespace": "shop"},
        "spec": {
            "workloadSelector": {"labels": {"app": "client"}},
            "egress": [{"hosts": ["./db.shop.svc.cluster.local"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
            "ingress": [
                {
                    "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                    "defaultEndpoint": "127.0.0.1:9081",
                }
            ],
        },
    }
    return [*_objects(net), sidecar]


def test_sidecar_scope_and_ingress_with_capture(tmp_path: Path) -> None:
    require_root_and_netns()
    shared = Path(tempfile.mkdtemp(prefix="pf-sidecar-"))
    shared.chmod(0o777)
    procs = Procs(tmp_path)
    try:
        with namespaces() as net:
            objects = shared / "objects.yaml"
            objects.write_text(yaml.safe_dump_all(_with_sidecar(net)))
            echo = [PYTHON, "-m", "pilotfish_operator.local.echo", "--name"]
            for name, listen in (("client-app", "0.0.0.0:9080"), ("loopback", "127.0.0.1:9081")):
                procs.start(name, net.exec(net.pod, *echo, name, "--listen", listen))
            procs.start(
                "web", net.exec(net.peer, *echo, "web-1", "--listen", f"{net.peer_ip}:8080")
            )
            db = ("--tcp", "--listen", f"{net.peer_ip}:5432")
            procs.start("db", net.exec(net.peer, *echo, "db-1", *db))
            start_sidecar(net, procs, shared, objects)
            _check(net)
    finally:
        procs.stop()
        shutil.rmtree(shared, ignore_errors=True)


def _check(net: Net) -> None:
    # Imported: the TCP service answers through the sidecar.
    db = tcp(net, net.pod, net.db_ip, 5432)
    assert db == {"greeting": "db-1", "echo": "ping\n", "error": None}, db
    # Not imported, and REGISTRY_ONLY: the web service's address and an address the mesh
    # never knew are both closed (BlackHoleCluster); without the Sidecar the first is
    # routed and the second passes through (test_capture.py).
    for url in (f"http://{net.cluster_ip}/", f"http://{net.peer_ip}:8080/direct"):
        refused = get(net, net.pod, url)
        assert refused["status"] is None and refused["error"], refused
    clusters = get(net, net.pod, "http://127.0.0.1:15000/clusters")["body"]
    assert f"{DB}::" in clusters and f"{WEB}::" not in clusters
    blackhole = get(net, net.pod, "http://127.0.0.1:15000/stats?filter=BlackHole")["body"]
    assert "tcp.BlackHoleCluster.downstream_cx_total: 2" in blackhole, blackhole

    # Inbound: the peer calls the app port; the ingress listener's defaultEndpoint (the
    # loopback app), not the pod's address, answers.
    inbound = get(net, net.peer, f"http://{net.pod_ip}:9080/in")
    assert inbound["status"] == 200, inbound
    assert json.loads(inbound["body"])["name"] == "loopback"

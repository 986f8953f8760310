"""A Sidecar with iptables capture (network namespaces, real Envoy as uid 1337; see
test_capture.py): the workload's Sidecar imports only the `db` service and sets
REGISTRY_ONLY, and its ingress listener sends the app port to a loopback endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_capture import Net, _get, _objects, _tcp, captured_pod

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
    apps = (("client-loopback", "127.0.0.1:9081"),)
    with captured_pod(tmp_path, _with_sidecar, apps) as (net, _):
        # Imported: the TCP service answers through the sidecar.
        db = _tcp(net, net.pod, net.db_ip, 5432)
        assert db == {"greeting": "db-1", "echo": "ping\n", "error": None}, db
        # Not imported, and REGISTRY_ONLY: the web service's address and an address the
        # mesh never knew are both closed (BlackHoleCluster); without the Sidecar the
        # first is routed and the second passes through (test_capture.py).
        for url in (f"http://{net.cluster_ip}/", f"http://{net.peer_ip}:8080/direct"):
            refused = _get(net, net.pod, url)
            assert refused["status"] is None and refused["error"], refused
        clusters = _get(net, net.pod, "http://127.0.0.1:15000/clusters")["body"]
        assert f"{DB}::" in clusters and f"{WEB}::" not in clusters
        stats = _get(net, net.pod, "http://127.0.0.1:15000/stats?filter=BlackHole")["body"]
        assert "tcp.BlackHoleCluster.downstream_cx_total: 2" in stats, stats

        # Inbound: the peer calls the app port; the ingress listener's defaultEndpoint
        # (the loopback app), not the pod address, answers.
        inbound = _get(net, net.peer, f"http://{net.pod_ip}:9080/in")
        assert inbound["status"] == 200, inbound
        assert json.loads(inbound["body"])["name"] == "client-loopback"

"""Egress with iptables capture, as in a cluster (netns.py: real Envoy as uid 1337 behind
`capture-init`'s rules, root required): ServiceEntries with resolution NONE — a wildcard
HTTP host, reached at whatever address the app resolved it to, and a CIDR of TCP
addresses — and the mesh config's outboundTrafficPolicy. Under ALLOW_ANY an address the
mesh does not know passes through; under REGISTRY_ONLY an unknown HTTP host on a mesh
port gets Istio's 502 and an unknown TCP destination is closed (BlackHoleCluster),
while the registered ones keep working.

The "external" servers run on the peer at addresses of the pair's /24 (no route goes
further): the app in the pod connects to them as it would to an outside IP.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import istio, mesh_config
from netns import (
    PYTHON,
    Net,
    Procs,
    get,
    namespaces,
    poll,
    require_root_and_netns,
    sh,
    start_sidecar,
    stats,
    tcp,
)

pytestmark = pytest.mark.envoy


def _subnet(net: Net) -> str:
    return net.pod_ip.rsplit(".", 1)[0]


def _objects(net: Net, policy: str) -> list[dict[str, Any]]:
    http = {"name": "http", "protocol": "HTTP", "number": 80}
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"mesh-injection": "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client-1", "namespace": "shop", "labels": {"app": "client"}},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"podIP": net.pod_ip, "phase": "Running"},
        },
        mesh_config(outboundTrafficPolicy={"mode": policy}),
        # Any *.wiki.test, wherever the app's DNS sent it: the original destination.
        istio(
            "ServiceEntry",
            "wiki",
            "shop",
            {
                "hosts": ["*.wiki.test"],
                "location": "MESH_EXTERNAL",
                "resolution": "NONE",
                "ports": [http],
            },
        ),
        istio(
            "VirtualService",
            "wiki",
            "shop",
            {
                "hosts": ["*.wiki.test"],
                "http": [
                    {
                        "headers": {"response": {"set": {"x-mesh": "wiki"}}},
                        "route": [{"destination": {"host": "*.wiki.test"}}],
                    }
                ],
            },
        ),
        # Partners' TCP servers: a /27 of addresses, one port.
        istio(
            "ServiceEntry",
            "partners",
            "shop",
            {
                "hosts": ["partners.example"],
                "addresses": [f"{_subnet(net)}.192/27"],
                "location": "MESH_EXTERNAL",
                "resolution": "NONE",
                "ports": [{"name": "tcp", "protocol": "TCP", "number": 9000}],
            },
        ),
    ]


def test_service_entries_and_outbound_policy_with_capture(tmp_path: Path) -> None:
    require_root_and_netns()
    shared = Path(tempfile.mkdtemp(prefix="pf-egress-"))
    shared.chmod(0o777)
    procs = Procs(tmp_path)
    try:
        with namespaces() as net:
            sub = _subnet(net)
            wiki, partner, unknown = f"{sub}.200", f"{sub}.201", f"{sub}.230"
            for ip in (wiki, partner, unknown):
                sh(*net.exec(net.peer, "ip", "addr", "add", f"{ip}/32", "dev", "lo"))
            echo = [PYTHON, "-m", "pilotfish_operator.local.echo", "--name"]
            for name, listen in (("wiki", f"{wiki}:80"), ("unknown-http", f"{unknown}:80")):
                procs.start(name, net.exec(net.peer, *echo, name, "--listen", listen))
            tcp_servers = (("partner", f"{partner}:9000"), ("unknown-tcp", f"{unknown}:9100"))
            for name, listen in tcp_servers:
                procs.start(name, net.exec(net.peer, *echo, name, "--tcp", "--listen", listen))
            objects = shared / "objects.yaml"
            objects.write_text(yaml.safe_dump_all(_objects(net, "ALLOW_ANY")))
            start_sidecar(net, procs, shared, objects)

            # A wildcard host, resolution NONE: the VirtualService applies, and the call
            # goes to the address the app connected to.
            r = get(net, net.pod, f"http://{wiki}/page", host="en.wiki.test")
            assert (r["status"], r["headers"].get("x-served-by")) == (200, "wiki"), r
            assert r["headers"].get("x-mesh") == "wiki", r
            # TCP to an address of the entry's CIDR: the entry's cluster, bytes untouched.
            assert tcp(net, net.pod, partner, 9000) == {
                "greeting": "partner",
                "echo": "ping\n",
                "error": None,
            }
            counts = stats(net)
            assert counts["cluster.outbound|80||*.wiki.test.upstream_rq_total"] == 1
            assert counts["cluster.outbound|9000||partners.example.upstream_cx_total"] == 1

            # ALLOW_ANY: what the mesh does not know passes through.
            r = get(net, net.pod, f"http://{unknown}/", host="unknown.test")
            assert (r["status"], r["headers"].get("x-served-by")) == (200, "unknown-http"), r
            assert "x-mesh" not in r["headers"]
            assert tcp(net, net.pod, unknown, 9100)["greeting"] == "unknown-tcp"

            # REGISTRY_ONLY: the same calls are refused, the registered ones still work.
            objects.write_text(yaml.safe_dump_all(_objects(net, "REGISTRY_ONLY")))

            def blocked() -> bool | None:
                r = get(net, net.pod, f"http://{unknown}/", host="unknown.test")
                return True if r["status"] == 502 else None

            poll("REGISTRY_ONLY to reach the sidecar", blocked)
            refused = tcp(net, net.pod, unknown, 9100)
            assert refused["greeting"] in (None, ""), refused  # closed by BlackHoleCluster
            r = get(net, net.pod, f"http://{wiki}/page", host="en.wiki.test")
            assert (r["status"], r["headers"].get("x-served-by")) == (200, "wiki"), r
            assert tcp(net, net.pod, partner, 9000)["greeting"] == "partner"
            counts = stats(net)
            assert counts["cluster.BlackHoleCluster.upstream_cx_none_healthy"] >= 1
            assert counts["cluster.outbound|9000||partners.example.upstream_cx_total"] == 2
    finally:
        procs.stop()
        shutil.rmtree(shared, ignore_errors=True)

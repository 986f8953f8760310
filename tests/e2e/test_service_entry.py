"""ServiceEntry through real Envoy (local mode): external services stood in for by local
servers, reached by name through the client's sidecar with DNS, DNS_ROUND_ROBIN and
STATIC resolution; a VirtualService and a DestinationRule on those hosts; exportTo; and
the mesh config's outboundTrafficPolicy REGISTRY_ONLY refusing a host the mesh does not
know (Istio's 502) while registered hosts keep working."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from harness import Harness, istio, mesh_config, namespace, pod

pytestmark = pytest.mark.envoy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _entry(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    return istio("ServiceEntry", name, ns, spec)


async def test_external_services_by_dns_and_static_resolution(harness: Harness) -> None:
    client, other = harness.ip(10), harness.ip(11)
    v1, v2, slow = harness.ip(21), harness.ip(22), harness.ip(23)
    # DNS: `localhost` is what the sidecar resolves (c-ares reads /etc/hosts).
    dns_port, rr_port, outside_port = _free_port(), _free_port(), _free_port()
    harness.backend("outside", "127.0.0.1", outside_port)
    harness.backend("external-dns", "127.0.0.1", dns_port)
    harness.backend("external-rr", "127.0.0.1", rr_port)
    harness.backend("ledger-v1", v1, 8080)
    harness.backend("ledger-v2", v2, 8080)
    harness.backend("slow", slow, 8080, delay=2.0)
    http = {"name": "http", "protocol": "HTTP"}
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("elsewhere"),
        pod("client", "shop", client, {"app": "client"}),
        pod("other", "elsewhere", other, {"app": "other"}),
        _entry(
            "api",
            "shop",
            hosts=["api.external.test"],
            location="MESH_EXTERNAL",
            resolution="DNS",
            ports=[{**http, "number": 80, "targetPort": dns_port}],
            endpoints=[{"address": "localhost"}],
        ),
        _entry(
            "pool",
            "shop",
            hosts=["localhost"],  # DNS over the host itself
            resolution="DNS_ROUND_ROBIN",
            ports=[{**http, "number": rr_port}],
        ),
        _entry(
            "ledger",
            "shop",
            hosts=["ledger.external.test"],
            location="MESH_EXTERNAL",
            resolution="STATIC",
            exportTo=["."],
            ports=[{**http, "number": 80, "targetPort": 8080}],
            endpoints=[
                {"address": v1, "labels": {"version": "v1"}},
                {"address": v2, "labels": {"version": "v2"}},
            ],
        ),
        _entry(
            "slow",
            "shop",
            hosts=["slow.external.test"],
            resolution="STATIC",
            ports=[{**http, "number": 80, "targetPort": 8080}],
            endpoints=[{"address": slow}],
        ),
        istio(
            "DestinationRule",
            "ledger",
            "shop",
            {
                "host": "ledger.external.test",
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        ),
        istio(
            "VirtualService",
            "ledger",
            "shop",
            {
                "hosts": ["ledger.external.test"],
                "http": [
                    {
                        "match": [{"headers": {"x-version": {"exact": "v2"}}}],
                        "route": [
                            {"destination": {"host": "ledger.external.test", "subset": "v2"}}
                        ],
                    },
                    {"route": [{"destination": {"host": "ledger.external.test", "subset": "v1"}}]},
                ],
            },
        ),
        istio(
            "VirtualService",
            "slow",
            "shop",
            {
                "hosts": ["slow.external.test"],
                "http": [
                    {"route": [{"destination": {"host": "slow.external.test"}}], "timeout": "300ms"}
                ],
            },
        ),
    )
    await harness.start()

    r = await harness.get(client, "http://api.external.test/hello")
    assert (r.status, r.served_by) == (200, "external-dns")
    r = await harness.get(client, f"http://localhost:{rr_port}/")
    assert (r.status, r.served_by) == (200, "external-rr")

    # STATIC endpoints, subsets by the endpoints' labels, a header route.
    for _ in range(4):
        r = await harness.get(client, "http://ledger.external.test/")
        assert (r.status, r.served_by) == (200, "ledger-v1")
    r = await harness.get(client, "http://ledger.external.test/", {"x-version": "v2"})
    assert (r.status, r.served_by) == (200, "ledger-v2")
    # exportTo ".": another namespace's sidecar does not know the host (and it does not
    # resolve, so passing it through fails).
    r = await harness.get(other, "http://ledger.external.test/")
    assert r.status == 503
    # A VirtualService timeout on an external host: the client gets 504, not a 2 s wait.
    r = await harness.get(client, "http://slow.external.test/")
    assert r.status == 504

    # ALLOW_ANY (the default): a host the mesh does not know is forwarded to, as without
    # a sidecar (the proxy resolves it: `localhost` here, a backend outside the mesh).
    r = await harness.get(client, f"http://localhost:{outside_port}/")
    assert (r.status, r.served_by) == (200, "outside")
    r = await harness.get(client, "http://unknown.example.test/")
    assert r.status == 503  # does not resolve: no such host, as the app would find
    await harness.apply(
        "mesh-config.yaml", mesh_config(outboundTrafficPolicy={"mode": "REGISTRY_ONLY"})
    )
    r = await harness.get(client, "http://unknown.example.test/")
    assert r.status == 502  # Istio's block_all answer
    r = await harness.get(client, f"http://localhost:{outside_port}/")
    assert r.status == 502  # reachable, but not in the registry
    r = await harness.get(other, "http://ledger.external.test/")
    assert r.status == 502  # not exported to it: unknown there too
    r = await harness.get(client, "http://api.external.test/")
    assert (r.status, r.served_by) == (200, "external-dns")  # registered: still reachable
    r = await harness.get(client, "http://ledger.external.test/", {"x-version": "v2"})
    assert (r.status, r.served_by) == (200, "ledger-v2")

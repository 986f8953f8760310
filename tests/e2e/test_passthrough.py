"""DestinationRule `simple: PASSTHROUGH`: no load balancing, the request goes where the
client sent it. Local mode has no original destination address, so the client names
it with `x-envoy-original-dst-host` (docs/architecture.md)."""

from __future__ import annotations

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


async def test_passthrough_sends_each_request_where_the_client_addressed_it(
    harness: Harness,
) -> None:
    client, a, b = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("db-a", a, 5432)
    harness.backend("db-b", b, 5432)
    harness.write(
        "mesh.yaml",
        namespace("data"),
        service("db", "data", {"app": "db"}, (5432,)),
        pod("client", "data", client, {"app": "client"}),
        pod("db-a", "data", a, {"app": "db"}, (5432,), inject=False),
        pod("db-b", "data", b, {"app": "db"}, (5432,), inject=False),
        istio(
            "DestinationRule",
            "db",
            "data",
            {"host": "db", "trafficPolicy": {"loadBalancer": {"simple": "PASSTHROUGH"}}},
        ),
    )
    await harness.start()
    for target, name in ((a, "db-a"), (b, "db-b"), (a, "db-a"), (a, "db-a"), (b, "db-b")):
        r = await harness.get(
            client, "http://db:5432/", {"x-envoy-original-dst-host": f"{target}:5432"}
        )
        assert (r.status, r.served_by) == (200, name)

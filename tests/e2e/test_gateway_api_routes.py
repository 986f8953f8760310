"""Gateway API routes through real Envoy in local mode: precedence across the HTTPRoutes
of one listener and hostname (not their creation order), GAMMA routes of one Service
merged the same way with a consumer route kept to its namespace, and a GRPCRoute
routing by gRPC service and method and splitting by weight."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from harness import Harness, namespace, pod, service
from test_gateway_api import GROUP, backends, gateway_api, within

pytestmark = pytest.mark.envoy


def created(obj: dict[str, Any], when: str) -> dict[str, Any]:
    obj["metadata"]["creationTimestamp"] = when
    return obj


def prefix(value: str, backend: str, **match: Any) -> dict[str, Any]:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": value}, **match}],
        "backendRefs": [{"name": backend, "port": 8080}],
    }


async def test_precedence_across_routes_beats_creation_order(harness: Harness) -> None:
    gw = harness.ip(140)
    labels = {f"{GROUP}/gateway-name": "web", "pilotfish.io/proxy": "gateway"}
    listener = {"name": "http", "port": 8080, "protocol": "HTTP"}
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        *backends(harness),
        pod("web-gateway", "shop", gw, labels),
        gateway_api(
            "Gateway", "web", "shop", {"gatewayClassName": "pilotfish", "listeners": [listener]}
        ),
        # The older route's /api would take /api/v2/... and canary requests if routes
        # kept creation order; the API puts the longer prefix and the header match first.
        created(
            gateway_api(
                "HTTPRoute",
                "old",
                "shop",
                {
                    "parentRefs": [{"name": "web"}],
                    "hostnames": ["shop.example.com"],
                    "rules": [prefix("/api", "foo-svc"), prefix("/same", "foo-svc")],
                },
            ),
            "2026-01-01T00:00:00Z",
        ),
        created(
            gateway_api(
                "HTTPRoute",
                "new",
                "shop",
                {
                    "parentRefs": [{"name": "web"}],
                    "hostnames": ["shop.example.com"],
                    "rules": [
                        prefix("/api/v2", "bar-svc"),
                        prefix(
                            "/api", "bar-svc-canary", headers=[{"name": "env", "value": "canary"}]
                        ),
                        prefix("/same", "bar-svc"),
                    ],
                },
            ),
            "2026-01-02T00:00:00Z",
        ),
    )
    await harness.start()
    host = {"host": "shop.example.com"}

    async def served(path: str, **headers: str) -> str | None:
        r = await harness.direct(f"{gw}:8080", path, {**host, **headers})
        assert r.status == 200, (path, r.status)
        return r.served_by

    assert await served("/api/v2/orders") == "bar-svc"
    assert await served("/api/v2") == "bar-svc"
    assert await served("/api/orders") == "foo-svc"
    assert await served("/api/orders", env="canary") == "bar-svc-canary"
    # A tie (the same match in both): the older route wins.
    assert await served("/same/x") == "foo-svc"


async def test_gamma_routes_merge_and_a_consumer_route_stays_in_its_namespace(
    harness: Harness,
) -> None:
    """Two producer routes of Service foo-svc: the newer one's /api/v2 beats the older
    one's /api prefix. A consumer route of namespace web sends that namespace's calls to
    the canary; shop's own clients keep the producer routes."""
    shop_client, web_client = harness.ip(145), harness.ip(146)

    def gamma(name: str, ns: str, when: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        parent = {"group": "", "kind": "Service", "name": "foo-svc", "namespace": "shop"}
        return created(
            gateway_api("HTTPRoute", name, ns, {"parentRefs": [parent], "rules": rules}),
            when,
        )

    canary = {"backendRefs": [{"name": "bar-svc-canary", "namespace": "shop", "port": 8080}]}
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        namespace("web"),
        *backends(harness),
        pod("shop-client", "shop", shop_client, {"app": "client"}),
        pod("web-client", "web", web_client, {"app": "client"}),
        gamma("old", "shop", "2026-01-01T00:00:00Z", [prefix("/api", "foo-svc")]),
        gamma("new", "shop", "2026-01-02T00:00:00Z", [prefix("/api/v2", "bar-svc")]),
        gamma("web-canary", "web", "2026-01-03T00:00:00Z", [canary]),
        gateway_api(
            "ReferenceGrant",
            "web-routes",
            "shop",
            {
                "from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": "web"}],
                "to": [{"group": "", "kind": "Service"}],
            },
            version="v1beta1",
        ),
    )
    await harness.start()
    url = "http://foo-svc.shop:8080"
    assert await harness.split(shop_client, f"{url}/api/v2/x", 5) == {"bar-svc": 5}
    assert await harness.split(shop_client, f"{url}/api/x", 5) == {"foo-svc": 5}
    assert await harness.split(web_client, f"{url}/api/v2/x", 5) == {"bar-svc-canary": 5}


@pytest.fixture
def greeters(harness: Harness) -> Iterator[dict[str, str]]:
    """Two gRPC backends (name → address), each answering demo.Greeter/Hello,
    demo.Greeter/Bye and demo.Admin/Reset with `<its name> <method>`."""
    servers, found = [], {}
    for i, name in enumerate(("greeter-v1", "greeter-v2")):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

        def answer(method: str, who: str = name) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                lambda request, context: f"{who} {method}".encode()
            )

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "demo.Greeter", {"Hello": answer("Hello"), "Bye": answer("Bye")}
                ),
                grpc.method_handlers_generic_handler("demo.Admin", {"Reset": answer("Reset")}),
            )
        )
        found[name] = harness.ip(151 + i)
        server.add_insecure_port(f"{found[name]}:9000")
        server.start()
        servers.append(server)
    yield found
    for server in servers:
        server.stop(None)


def grpc_calls(address: str, method: str, n: int) -> Counter[str]:
    """n unary calls to the gateway: each answer's backend name, or the error code."""
    out: Counter[str] = Counter()
    options = [("grpc.default_authority", "grpc.example.com")]
    with grpc.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(method)
        for _ in range(n):
            try:
                who, _, said = call(b"", timeout=10).decode().partition(" ")
                assert said == method.rpartition("/")[2]
                out[who] += 1
            except grpc.RpcError as err:
                out[err.code().name] += 1
    return out


async def test_grpc_route_by_service_and_method_with_a_split(
    harness: Harness, greeters: dict[str, str]
) -> None:
    gw = harness.ip(150)
    labels = {f"{GROUP}/gateway-name": "rpc", "pilotfish.io/proxy": "gateway"}
    listener = {"name": "grpc", "port": 8080, "protocol": "HTTP"}

    def backend(name: str, weight: int = 1) -> dict[str, Any]:
        return {"name": name, "port": 9000, "weight": weight}

    harness.write(
        "mesh.yaml",
        namespace("shop"),
        *(service(n, "shop", {"app": n}, (9000,), protocol="grpc") for n in greeters),
        *(pod(n, "shop", ip, {"app": n}, (9000,), inject=False) for n, ip in greeters.items()),
        pod("rpc-gateway", "shop", gw, labels),
        gateway_api(
            "Gateway", "rpc", "shop", {"gatewayClassName": "pilotfish", "listeners": [listener]}
        ),
        gateway_api(
            "GRPCRoute",
            "greeter",
            "shop",
            {
                "parentRefs": [{"name": "rpc"}],
                "hostnames": ["grpc.example.com"],
                "rules": [
                    {
                        "matches": [{"method": {"service": "demo.Admin"}}],
                        "backendRefs": [backend("greeter-v2")],
                    },
                    {
                        "matches": [{"method": {"service": "demo.Greeter", "method": "Hello"}}],
                        "backendRefs": [backend("greeter-v1", 70), backend("greeter-v2", 30)],
                    },
                ],
            },
        ),
    )
    await harness.start()
    address = f"{gw}:8080"
    # By service: every demo.Admin call goes to v2.
    assert grpc_calls(address, "/demo.Admin/Reset", 20) == {"greeter-v2": 20}
    # By service and method: a 70/30 split.
    n = 300
    served = grpc_calls(address, "/demo.Greeter/Hello", n)
    assert set(served) == {"greeter-v1", "greeter-v2"}, served
    assert within(served["greeter-v2"], n, 0.3), served
    # No rule matches demo.Greeter/Bye: the gateway's 404 is gRPC's UNIMPLEMENTED.
    assert grpc_calls(address, "/demo.Greeter/Bye", 3) == {"UNIMPLEMENTED": 3}

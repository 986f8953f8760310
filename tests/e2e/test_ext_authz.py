"""CUSTOM authorization through real Envoy: a CUSTOM AuthorizationPolicy sends the
requests its rules match to an external authorization service named in the mesh
config, here a real HTTP server shaped like Istio's ext-authz sample (it allows a
request carrying `x-ext-authz: allow`). Requests the rules do not match never reach
it; its verdict and the headers it returns reach the caller or the app as
configured; a provider the mesh config no longer has fails closed. A gRPC provider
(envoy.service.auth.v3.Authorization served by grpcio) decides the same way."""

from __future__ import annotations

from typing import Any

import aiohttp.web
import grpc
import pytest
from envoy_data_plane.envoy.service.auth.v3 import CheckRequest, CheckResponse
from envoy_data_plane.google.rpc import Status
from harness import Harness, mesh_config, namespace, pod, service

pytestmark = pytest.mark.envoy

AUTHORIZATION = "envoy.service.auth.v3.Authorization"
PROVIDER = {
    "name": "sample-ext-authz",
    "envoyExtAuthzHttp": {
        "service": "ext-authz.shop.svc.cluster.local",
        "port": 8000,
        "pathPrefix": "/check",
        "includeRequestHeadersInCheck": ["x-ext-authz"],
        "includeAdditionalHeadersInCheck": {"x-authz-from": "pilotfish"},
        "headersToUpstreamOnAllow": ["x-ext-authz-check-result"],
        "headersToDownstreamOnDeny": ["x-ext-authz-check-result"],
    },
}


def custom_policy(provider: str, rule: dict[str, Any]) -> dict[str, Any]:
    """A CUSTOM AuthorizationPolicy for the web workload with one rule."""
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "ext-authz", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "action": "CUSTOM",
            "provider": {"name": provider},
            "rules": [rule],
        },
    }


async def ext_authz_server(ip: str, port: int) -> tuple[aiohttp.web.AppRunner, list[Any]]:
    """Allows a request with `x-ext-authz: allow`, records every check."""
    checks: list[Any] = []

    async def check(request: aiohttp.web.Request) -> aiohttp.web.Response:
        checks.append((request.path, dict(request.headers)))
        if request.headers.get("x-ext-authz") == "allow":
            return aiohttp.web.Response(headers={"x-ext-authz-check-result": "allowed"})
        return aiohttp.web.Response(
            status=403, text="denied by ext_authz", headers={"x-ext-authz-check-result": "denied"}
        )

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", check)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, ip, port).start()
    return runner, checks


async def test_custom_policy_asks_the_external_service_for_the_requests_it_selects(
    harness: Harness,
) -> None:
    client, web, authz = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("web-1", web, 8080)
    runner, checks = await ext_authz_server(authz, 8000)
    try:
        policy = custom_policy("sample-ext-authz", {"to": [{"operation": {"paths": ["/admin/*"]}}]})
        harness.write(
            "mesh.yaml",
            namespace("shop"),
            service("web", "shop", {"app": "web"}, {80: 8080}),
            service("ext-authz", "shop", {"app": "ext-authz"}, (8000,)),
            pod("client", "shop", client, {"app": "client"}),
            pod("web-1", "shop", web, {"app": "web"}, (8080,)),
            pod("ext-authz-1", "shop", authz, {"app": "ext-authz"}, (8000,), inject=False),
            policy,
        )
        harness.write("meshconfig.yaml", mesh_config(extensionProviders=[PROVIDER]))
        await harness.start()

        # Outside the rules: served, the service never asked.
        r = await harness.get(client, "http://web.shop/public")
        assert (r.status, r.served_by) == (200, "web-1")
        assert checks == []

        # Selected and refused: the caller gets the service's 403 and its header.
        r = await harness.get(client, "http://web.shop/admin/users")
        assert r.status == 403
        assert r.headers.get("x-ext-authz-check-result") == "denied"
        assert r.served_by is None
        path, headers = checks[-1]
        assert path == "/check/admin/users"
        assert headers.get("x-authz-from") == "pilotfish"

        # Selected and allowed: the app gets the request with the service's header.
        r = await harness.get(client, "http://web.shop/admin/users", {"x-ext-authz": "allow"})
        assert (r.status, r.served_by) == (200, "web-1")
        assert r.json["headers"].get("x-ext-authz-check-result") == "allowed"
        assert len(checks) == 2 and checks[-1][1].get("x-ext-authz") == "allow"

        # The provider is gone from the mesh config: the policy fails closed (its rules
        # deny), the rest of the workload is still served.
        await harness.apply("meshconfig.yaml", mesh_config(extensionProviders=[]))
        r = await harness.get(client, "http://web.shop/admin/users", {"x-ext-authz": "allow"})
        assert r.status == 403
        assert (await harness.get(client, "http://web.shop/public")).status == 200
        assert len(checks) == 2
    finally:
        await runner.cleanup()


async def grpc_authz_server(ip: str, port: int) -> tuple[grpc.aio.Server, list[str]]:
    """envoy.service.auth.v3.Authorization/Check: OK for `x-ext-authz: allow`, else
    PERMISSION_DENIED; records each checked path."""
    checked: list[str] = []

    async def check(request: CheckRequest, context: Any) -> bytes:
        http = request.attributes.request.http if request.attributes else None
        headers = http.headers if http is not None else {}
        checked.append(http.path if http is not None else "")
        allowed = headers.get("x-ext-authz") == "allow"
        return bytes(CheckResponse(status=Status(code=0 if allowed else 7)))

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(check, request_deserializer=CheckRequest.parse)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(AUTHORIZATION, {"Check": handler}),)
    )
    server.add_insecure_port(f"{ip}:{port}")
    await server.start()
    return server, checked


async def test_grpc_provider_decides_through_envoys_grpc_client(harness: Harness) -> None:
    client, web, authz = harness.ip(20), harness.ip(21), harness.ip(22)
    harness.backend("web-1", web, 8080)
    server, checked = await grpc_authz_server(authz, 9000)
    try:
        provider = {
            "name": "grpc-authz",
            "envoyExtAuthzGrpc": {"service": "ext-authz.shop.svc.cluster.local", "port": 9000},
        }
        harness.write(
            "mesh.yaml",
            namespace("shop"),
            service("web", "shop", {"app": "web"}, {80: 8080}),
            service("ext-authz", "shop", {"app": "ext-authz"}, (9000,), protocol="grpc"),
            pod("client", "shop", client, {"app": "client"}),
            pod("web-1", "shop", web, {"app": "web"}, (8080,)),
            pod("ext-authz-1", "shop", authz, {"app": "ext-authz"}, (9000,), inject=False),
            custom_policy("grpc-authz", {}),
            mesh_config(extensionProviders=[provider]),
        )
        await harness.start()
        r = await harness.get(client, "http://web.shop/orders")
        assert r.status == 403 and r.served_by is None
        r = await harness.get(client, "http://web.shop/orders", {"x-ext-authz": "allow"})
        assert (r.status, r.served_by) == (200, "web-1")
        assert checked == ["/orders", "/orders"]
    finally:
        await server.stop(None)

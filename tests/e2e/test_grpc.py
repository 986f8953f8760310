"""gRPC through the mesh, through real Envoy: a service port named `grpc` is spoken to
over HTTP/2 (on both sidecars), and Istio's default retry policy retries a gRPC
UNAVAILABLE, which `retries: {attempts: 0}` turns off."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from harness import Harness, istio, namespace, pod

pytestmark = pytest.mark.envoy

METHOD = "/demo.Greeter/Hello"
N = 30


class Flaky:
    """Answers UNAVAILABLE to two calls of three, then `hello <request>`."""

    def __init__(self) -> None:
        self.calls = itertools.count()
        self.lock = threading.Lock()

    def hello(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self.lock:
            n = next(self.calls)
        if n % 3 != 2:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return b"hello " + request


@pytest.fixture
def backend(harness: Harness) -> Iterator[Flaky]:
    flaky = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handler = grpc.unary_unary_rpc_method_handler(flaky.hello)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("demo.Greeter", {"Hello": handler}),)
    )
    server.add_insecure_port(f"{harness.ip(11)}:9000")
    server.start()
    yield flaky
    server.stop(None)


def calls(client: str, n: int) -> Counter[str]:
    """n unary calls through the client's sidecar (the outbound proxy, by authority).
    Blocking: call it in a thread, or the control plane (same event loop) stalls."""
    out: Counter[str] = Counter()
    options = [("grpc.default_authority", "greeter:9000")]
    with grpc.insecure_channel(f"{client}:15001", options=options) as channel:
        hello = channel.unary_unary(METHOD)
        for _ in range(n):
            try:
                assert hello(b"mesh", timeout=5) == b"hello mesh"
                out["OK"] += 1
            except grpc.RpcError as err:
                out[err.code().name] += 1
    return out


async def test_grpc_over_http2_with_the_default_retry_on_unavailable(
    harness: Harness, backend: Flaky
) -> None:
    client = harness.ip(10)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "greeter", "namespace": "shop"},
            "spec": {"selector": {"app": "greeter"}, "ports": [{"name": "grpc", "port": 9000}]},
        },
        pod("client", "shop", client, {"app": "client"}),
        pod("greeter-1", "shop", harness.ip(11), {"app": "greeter"}, (9000,), inject=False),
    )
    await harness.start()
    # UNAVAILABLE is in Istio's default retryOn: every call succeeds on its third try.
    assert await asyncio.to_thread(calls, client, N) == {"OK": N}

    vs = {
        "hosts": ["greeter"],
        "http": [{"retries": {"attempts": 0}, "route": [{"destination": {"host": "greeter"}}]}],
    }
    await harness.apply("vs.yaml", istio("VirtualService", "greeter", "shop", vs))
    backend.calls = itertools.count()
    assert await asyncio.to_thread(calls, client, N) == {"UNAVAILABLE": 2 * N // 3, "OK": N // 3}


async def test_grpc_to_an_injected_app(harness: Harness, backend: Flaky) -> None:
    """The app behind its own sidecar: the inbound side speaks HTTP/2 to it too."""
    client = harness.ip(10)
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "greeter", "namespace": "shop"},
            "spec": {
                "selector": {"app": "greeter"},
                "ports": [{"name": "api", "port": 9000, "appProtocol": "grpc"}],
            },
        },
        pod("client", "shop", client, {"app": "client"}),
        pod("greeter-1", "shop", harness.ip(11), {"app": "greeter"}, (9000,)),
    )
    await harness.start()
    assert await asyncio.to_thread(calls, client, N) == {"OK": N}

"""Real Envoy against our ADS server: ACKs, then a NACK that keeps the last good config."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from adsclient import Running
from envoyconfig import NODE, bootstrap, config, free_port

from pilotfish_xds.types import CLUSTER, LISTENER, ROUTE

pytestmark = pytest.mark.envoy

ENVOY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "envoy"


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
        text: str = response.read().decode()
        return text


async def http_get(port: int, path: str = "/") -> str:
    """GET off the event loop: the xDS server under test shares this loop."""
    return await asyncio.to_thread(_get, port, path)


async def poll(check: Callable[[], bool | Awaitable[bool]], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
        except OSError:
            pass  # not listening yet
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within:.0f} s")
        await asyncio.sleep(0.05)


async def says(port: int, text: str) -> bool:
    return await http_get(port) == text


@pytest.fixture
def envoy_factory(tmp_path: Path) -> Iterator[Callable[[int, str], int]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(xds_port: int, api_type: str) -> int:
        admin = free_port()
        path = tmp_path / "bootstrap.yaml"
        path.write_text(bootstrap(xds_port, admin, api_type))
        log = (tmp_path / "envoy.log").open("wb")
        procs.append(
            subprocess.Popen(
                [str(ENVOY), "--use-dynamic-base-id", "-c", str(path), "-l", "warning"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        return admin

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_envoy_acks_then_nack_keeps_last_good(
    xds: Running, envoy_factory: Callable[[int, str], int], api_type: str
) -> None:
    listen = free_port()
    good = config(listen, "hello v1")
    assert good.consistent()
    xds.cache.set(NODE, good)
    admin = envoy_factory(int(xds.address.rsplit(":", 1)[1]), api_type)

    node = xds.status.node(NODE)

    def acked(type_url: str) -> bool:
        status = node.types.get(type_url)
        return status is not None and status.acked_version == good.version(type_url)

    await poll(lambda: all(acked(t) for t in (CLUSTER, LISTENER, ROUTE)))
    await poll(lambda: says(listen, "hello v1"))
    kind = "delta" if api_type == "DELTA_GRPC" else "sotw"
    assert [s.kind for s in node.streams.values()] == [kind]

    # A route with an invalid RE2 regex: Envoy must reject it.
    xds.cache.set(NODE, config(listen, "hello v2", regex="(unclosed"))
    await poll(lambda: node.types[ROUTE].nacks >= 1)
    nack = node.types[ROUTE].last_nack
    assert nack is not None
    assert "regex" in nack.message.lower() or "unclosed" in nack.message
    assert node.types[ROUTE].acked_version == good.version(ROUTE)
    assert xds.status.nacks_total >= 1

    # Envoy still serves the last good route, and it is not re-sent in a loop.
    assert await http_get(listen) == "hello v1"
    await asyncio.sleep(1.0)  # a resend loop would show up as more NACKs in this window
    assert node.types[ROUTE].nacks == 1
    dump = await http_get(admin, "/config_dump?resource=dynamic_route_configs")
    assert "hello v1" in dump and "hello v2" not in dump

    # The next good change is still delivered.
    fixed = config(listen, "hello v3")
    xds.cache.set(NODE, fixed)
    await poll(lambda: says(listen, "hello v3"))
    await poll(lambda: node.types[ROUTE].acked_version == fixed.version(ROUTE))

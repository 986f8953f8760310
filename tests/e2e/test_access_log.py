"""Access logs through real Envoy: the mesh config's accessLogFile makes every sidecar
log each request (and TCP connection) it handles, client side and server side, in
Istio's default text line; switching accessLogEncoding to JSON gives Istio's JSON keys."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from harness import Harness, mesh_config, namespace, pod, service

pytestmark = pytest.mark.envoy


async def lines(path: Path, want: int) -> list[str]:
    """The file's lines once it has `want` (Envoy flushes access logs every second here)."""
    found: list[str] = []
    for _ in range(150):
        if await asyncio.to_thread(path.exists):
            found = (await asyncio.to_thread(path.read_text)).splitlines()
        if len(found) >= want:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path}: {found}")


async def test_access_log_text_then_json(harness: Harness, tmp_path: Path) -> None:
    client, web, db = harness.ip(70), harness.ip(71), harness.ip(72)
    harness.backend("web-1", web, 8080)
    harness.backend("db-1", db, 5432, tcp=True)
    text_log, json_log = tmp_path / "access.log", tmp_path / "access.json"
    harness.write(
        "mesh.yaml",
        namespace("shop"),
        service("web", "shop", {"app": "web"}, {80: 8080}),
        pod("client", "shop", client, {"app": "client"}),
        pod("web-1", "shop", web, {"app": "web"}, (8080,)),
        service("db", "shop", {"app": "db"}, (5432,), protocol="tcp"),
        pod("db-1", "shop", db, {"app": "db"}, (5432,)),
    )
    harness.write("meshconfig.yaml", mesh_config(accessLogFile=str(text_log)))
    await harness.start()
    r = await harness.get(client, "http://web.shop/hello?x=1", {"user-agent": "probe/1.0"})
    assert r.status == 200

    # One line from the client's sidecar, one from the server's, same request id.
    logged = await lines(text_log, 2)
    outbound = next(line for line in logged if "outbound|80||web.shop.svc.cluster.local" in line)
    inbound = next(line for line in logged if "inbound|8080||" in line)
    for line in (outbound, inbound):
        assert '"GET /hello?x=1 HTTP/1.1" 200' in line
        assert '"probe/1.0"' in line
    request_id = outbound.split('"')[7]
    assert request_id and f'"{request_id}"' in inbound

    # A TCP connection: one line on each side when it ends.
    reader, writer = await asyncio.open_connection(client, 5432)
    assert (await asyncio.wait_for(reader.readline(), 10)).strip() == b"db-1"
    writer.close()
    await writer.wait_closed()
    logged = await lines(text_log, 4)
    tcp = [line for line in logged if "|5432|" in line]
    assert {line.split()[-6] for line in tcp} == {
        "outbound|5432||db.shop.svc.cluster.local",
        "inbound|5432||",
    }, tcp

    await harness.apply(
        "meshconfig.yaml", mesh_config(accessLogFile=str(json_log), accessLogEncoding="JSON")
    )
    # A logging change replaces listeners: connections opened before it (the client
    # sidecar's pooled one to the server) keep the old logger until they drain (1 s here).
    await asyncio.sleep(2.5)
    r = await harness.get(client, "http://web.shop/json", {"x-backend-status": "404"})
    entries = [json.loads(line) for line in await lines(json_log, 2)]
    clusters = {e["upstream_cluster"] for e in entries}
    assert clusters == {"outbound|80||web.shop.svc.cluster.local", "inbound|8080||"}
    for e in entries:
        assert (e["method"], e["path"], e["response_code"]) == ("GET", "/json", r.status)
        assert e["authority"] and e["request_id"] and e["duration"] is not None

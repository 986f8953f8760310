"""`pilotfish local` as a user runs it, and the debugging commands against it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from harness import Harness, _request, namespace, pod, service

from pilotfish_xds import types

pytestmark = pytest.mark.envoy

PILOTFISH = [sys.executable, "-m", "pilotfish_operator.cli"]


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def _cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *PILOTFISH, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize("flags", [(), ("--no-on-demand",)], ids=["scoped", "full"])
def test_local_command_serves_writes_state_and_stops_everything(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    scoped = not flags  # the default
    h = Harness.new(tmp_path)
    client, web = h.ip(10), h.ip(11)
    h.backend("web-1", web, 8080)
    h.write(
        "mesh.yaml",
        namespace("site"),
        service("web", "site", {"app": "web"}, (8080,)),
        pod("client", "site", client, {"app": "client"}),
        pod("web-1", "site", web, {"app": "web"}, (8080,)),
    )
    h.write_text("broken.yaml", "kind: [unclosed\n")
    state = tmp_path / "state.json"
    log = (tmp_path / "local.log").open("w")
    args = ["local", "--config", str(h.config), "--state", str(state), "--xds", "127.0.0.1:0"]
    args += flags
    proc = subprocess.Popen([*PILOTFISH, *args], stderr=log)
    try:
        _wait_for(state.exists)
        doc = json.loads(state.read_text())
        assert doc["pods"]["site/client"] == {
            "ip": client,
            "injected": True,
            "outbound": f"{client}:15001",
            "inbound": f"{client}:15006",
            "admin": f"{client}:15000",
            "synced": True,
        }
        assert doc["pods"]["site/web-1"]["injected"] is True
        # A client request through its sidecar reaches the app through web-1's sidecar.
        r = _request(doc["pods"]["site/client"]["outbound"], "http://web:8080/hello", {}, "GET")
        assert r.status == 200 and r.served_by == "web-1"
        assert r.json["path"] == "/hello"
        assert "x-request-id" in r.json["headers"]  # Envoy was on the way

        envoys = _children(proc.pid)
        assert len(envoys) == 2

        status = subprocess.run(
            [*PILOTFISH, "proxy-status", "--state", str(state)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows = {line.split()[0]: line.split() for line in status.splitlines()[1:]}
        assert set(rows) == {"client.site", "web-1.site"}
        assert rows["client.site"][2:6] == ["SYNCED"] * 4, status
        # Scoped, web-1's sidecar has called nothing, so never asked for endpoints.
        web_eds = "-" if scoped else "SYNCED"
        assert rows["web-1.site"][2:6] == ["SYNCED", "SYNCED", web_eds, "SYNCED"], status

        routes = subprocess.run(
            [*PILOTFISH, "proxy-config", "site/client", "routes", "--state", str(state)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        config = yaml.safe_load(routes)
        by_name = {r["name"]: r for r in config["routes"]["resources"]}
        assert set(by_name) == {"inbound", "outbound"}  # the inbound table is RDS too
        if scoped:
            # No virtual host is pushed; the service is fetched by Host (VHDS).
            assert "vhds" in by_name["outbound"] and not by_name["outbound"].get("virtualHosts")
            fetchable = config["routes"]["onDemand"]["virtualHosts"]
            assert [v["name"] for v in fetchable] == ["outbound/web.site.svc.cluster.local:8080"]
        else:
            vhosts = by_name["outbound"]["virtualHosts"]
            # The mesh's service, then ALLOW_ANY's forward to any other host.
            names = [v["name"] for v in vhosts]
            assert names == ["web.site.svc.cluster.local:8080", "allow_any"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        log.close()
        h.stop_backends()
        stderr = (tmp_path / "local.log").read_text()
    assert proc.returncode == 0, stderr
    assert "broken.yaml: cannot read" in stderr  # reported, and the rest kept working
    for pid in envoys:
        _wait_for(lambda pid=pid: not _alive(pid), timeout=10)


async def test_nack_is_reported_and_the_proxy_keeps_its_last_good_config(
    harness: Harness,
) -> None:
    client, web = harness.ip(10), harness.ip(11)
    harness.backend("web-1", web, 8080)
    harness.write(
        "mesh.yaml",
        namespace("site"),
        service("web", "site", {"app": "web"}, (8080,)),
        pod("client", "site", client, {"app": "client"}),
        pod("web-1", "site", web, {"app": "web"}, (8080,), inject=False),
    )
    await harness.start()
    assert harness.mesh is not None
    assert (await harness.get(client, "http://web:8080/")).served_by == "web-1"

    # Config Envoy rejects (as a translation bug would produce): an invalid regex.
    good = await harness.send_rejected_routes("client.site")
    status = await _cli("proxy-status", "--state", str(harness.workdir / "state.json"))
    row = next(line for line in status.splitlines() if line.startswith("client.site"))
    assert "NACKED" in row.split()[2:6]
    assert "(unclosed" in row  # Envoy's own message
    # Envoy kept the last good routes.
    assert (await harness.get(client, "http://web:8080/")).served_by == "web-1"
    # Nothing is re-sent in a loop: still one NACK a moment later.
    await asyncio.sleep(0.5)
    assert harness.mesh.status.get("client.site").type(types.ROUTE).nacks == 1  # type: ignore[union-attr]
    # The next good config goes out and is accepted.
    harness.mesh.cache.set("client.site", good)
    await harness.synced()
    status = await _cli("proxy-status", "--state", str(harness.workdir / "state.json"))
    row = next(line for line in status.splitlines() if line.startswith("client.site"))
    assert row.split()[2:6] == ["SYNCED"] * 4


def test_help_lists_subcommands() -> None:
    out = subprocess.run([*PILOTFISH, "--help"], capture_output=True, text=True, check=True)
    for command in ("local", "demo", "proxy-status", "proxy-config"):
        assert command in out.stdout

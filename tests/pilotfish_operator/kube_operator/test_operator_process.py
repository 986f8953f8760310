"""`pilotfish operator` as a process, as the Deployment runs it, against the emulator:
with a sidecar connected, SIGTERM stops it quietly (issue 12: the ADS servicer logged
an unhandled CancelledError traceback)."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, objects
from proxy_view import Proxy

from conftest import create, free_port, wait_for

pytestmark = pytest.mark.kmock(cls=Emulator)


def kubeconfig(path: Path, server: str, token_file: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(120)
async def test_sigterm_with_a_connected_sidecar_stops_quietly(k8s: Any, tmp_path: Path) -> None:
    for obj in objects():
        await create(k8s, obj)
    token = tmp_path / "token"
    token.write_text("operator-token\n")
    config = kubeconfig(tmp_path / "kubeconfig", str(k8s.url).rstrip("/"), token)
    xds = free_port()
    args = ["--kubeconfig", str(config), "--xds", f"127.0.0.1:{xds}", "--plaintext-xds"]
    args += ["--webhook", f"127.0.0.1:{free_port()}", "--monitoring", f"127.0.0.1:{free_port()}"]
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pilotfish_operator.cli",
            "operator",
            *args,
            stdout=out,
            stderr=out,
        )
    try:
        await wait_for(lambda: listening(xds) or proc.returncode is not None, 60, "xDS port")
        async with Proxy(f"127.0.0.1:{xds}", CLIENT_NODE, []) as proxy:
            await proxy.until(lambda c: bool(c.clusters), within=60, what="config")
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "CancelledError" not in text, text[-3000:]

"""Tens of real sidecars starting at once against a mesh of hundreds of services
converge with no rejected config; one that cannot converge is named (issue 6)."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

from pilotfish_operator.local.sidecars import default_envoy

pytestmark = pytest.mark.envoy

SERVICES = 300
CLIENTS = 24


def _mesh(h: Harness) -> list[dict[str, Any]]:
    objects = [namespace("fan")]
    for i in range(SERVICES):
        ip = h.ip(2) if i == 0 else f"127.{200 + i // 250}.{i % 250}.2"
        objects += [
            service(f"s{i}", "fan", {"app": f"s{i}"}, (8080,)),
            pod(f"s{i}-0", "fan", ip, {"app": f"s{i}"}, (8080,), inject=False),
            istio(
                "VirtualService",
                f"s{i}",
                "fan",
                {
                    "hosts": [f"s{i}"],
                    "http": [
                        {
                            "match": [{"headers": {"x-canary": {"exact": "yes"}}}],
                            "route": [{"destination": {"host": f"s{i}"}}],
                        },
                        {"route": [{"destination": {"host": f"s{i}"}}]},
                    ],
                },
            ),
        ]
    for k in range(CLIENTS):
        objects.append(pod(f"c{k}", "fan", h.ip(10 + k), {"app": "client"}, (9090,)))
    return objects


@pytest.mark.timeout(400)
# State of the World sidecars are sent every service; Delta ones are scoped (the default).
@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_many_sidecars_start_at_once_with_no_nack(tmp_path: Path, delta: bool) -> None:
    h = Harness.new(tmp_path)
    h.backend("s0", h.ip(2), 8080)
    h.write("mesh.yaml", *_mesh(h))
    try:
        await h.start(delta=delta, on_demand=delta, within=300)
        assert h.mesh is not None
        assert len(h.mesh.pipeline.mesh.proxies) == CLIENTS
        assert h.mesh.status.nacks_total == 0
        state = json.loads((tmp_path / "state.json").read_text())
        clients = [v for k, v in state["pods"].items() if v["injected"]]
        assert len(clients) == CLIENTS and all(c["synced"] for c in clients)
        # Every sidecar routes: its outbound reaches the one real backend.
        answers = await asyncio.gather(
            *(h.get(h.ip(10 + k), "http://s0:8080/") for k in range(CLIENTS))
        )
        assert [r.served_by for r in answers] == ["s0"] * CLIENTS
        assert h.mesh.status.nacks_total == 0
    finally:
        await h.stop()


def _envoy_that_hangs_for(tmp_path: Path, pod_name: str) -> str:
    """Real Envoy, except for one pod whose sidecar never connects."""
    script = tmp_path / "envoy"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *_{pod_name}.bootstrap.json*) exec sleep 600;; esac\n'
        f'exec {default_envoy()} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.timeout(120)
async def test_a_sidecar_that_does_not_converge_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness.new(tmp_path)
    h.write(
        "mesh.yaml",
        namespace("site"),
        service("web", "site", {"app": "web"}, (8080,)),
        pod("good", "site", h.ip(10), {"app": "client"}),
        pod("stuck", "site", h.ip(11), {"app": "client"}),
    )
    caplog.set_level(logging.ERROR, logger="pilotfish_operator.local.runner")
    state_file = tmp_path / "state.json"
    try:
        # Local mode does not wait forever: after the timeout the state file is written
        # with the laggard marked, so `start` returns.
        await h.start(envoy=_envoy_that_hangs_for(tmp_path, "stuck"), converge_timeout=3)
        state = json.loads(state_file.read_text())
        good, stuck = state["pods"]["site/good"], state["pods"]["site/stuck"]
        assert good["synced"] is True and "problem" not in good
        assert stuck["synced"] is False
        assert stuck["problem"].startswith("not connected to the xDS server")
        assert "site_stuck.envoy.log" in stuck["problem"]
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("stuck.site has not converged" in e for e in errors), errors
        assert not any("good.site" in e for e in errors)
    finally:
        await h.stop()

"""`make demo` runs `pilotfish demo`: it must walk the canary and exit 0."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import pytest

pytestmark = pytest.mark.envoy


def test_demo_walks_the_canary_and_its_dashboard_is_live() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "pilotfish_operator.cli", "demo", "--requests", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None
    lines = []
    page = graph = b""
    for line in demo.stdout:
        lines.append(line)
        found = re.search(r"dashboard: (http://\S+/dashboard)", line)
        if found:  # the URL printed serves the page while the canary walks
            with urllib.request.urlopen(found.group(1), timeout=10) as r:
                page = r.read()
            with urllib.request.urlopen(found.group(1) + "/api/graph", timeout=10) as r:
                graph = r.read()
    stdout = "".join(lines)
    assert demo.wait(300) == 0, stdout + (demo.stderr.read() if demo.stderr else "")
    for step in ("v1 90% / v2 10%", "v1 50% / v2 50%", "v1 0% / v2 100%"):
        assert step in stdout
    assert "OUT OF BOUNDS" not in stdout
    assert stdout.count("through the ingress gateway: ") == 3  # the edge sees each split
    assert "all splits within bounds" in stdout
    assert b'<svg id="graph"' in page
    assert "source" in json.loads(graph)


def test_resilience_demo_shows_every_effect() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pilotfish_operator.cli", "demo", "resilience"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for effect in (
        "the default retry policy hides every failure: ok",
        "shop-bad ejected after two failures: ok",
        "excess load shed at once: ok",
        "only the tester sees the fault: ok",
    ):
        assert effect in out.stdout, out.stdout
    assert "resilience: every effect within bounds" in out.stdout


def test_security_demo_walks_plaintext_permissive_strict_and_a_denied_caller() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pilotfish_operator.cli", "demo", "security"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for step in (
        "the legacy client still gets in (PERMISSIVE): ok",
        "plaintext refused, mesh callers unaffected: ok",
        "the intruder's valid certificate is not enough: ok",
    ):
        assert step in out.stdout, out.stdout
    assert "security: every step within bounds" in out.stdout

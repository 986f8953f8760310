"""`make demo` runs `pilotfish demo`: it must walk the canary and exit 0."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.envoy


def test_demo_walks_the_canary() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pilotfish_operator.cli", "demo", "--requests", "300"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for step in ("v1 90% / v2 10%", "v1 50% / v2 50%", "v1 0% / v2 100%"):
        assert step in out.stdout
    assert "OUT OF BOUNDS" not in out.stdout
    assert "all splits within bounds" in out.stdout


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

"""`pilotfish authz check`: which security policies apply to a pod, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish_operator.cli import main

CASES = Path(__file__).parent / "testdata" / "translate"


def test_explains_each_policy_that_applies(capsys: pytest.CaptureFixture[str]) -> None:
    files = ["-f", str(CASES / "authorization.in.yaml")]
    assert main(["authz", "check", "shop/web-1", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Pod shop/web-1 (labels app=web): has a sidecar"
    assert "PeerAuthentication: PERMISSIVE" in out
    assert "  ALLOW shop/web: 1 rule(s) (selector app=web matches)" in out
    assert "  DENY shop/no-admin: 1 rule(s) (namespace-wide (no selector in shop))" in out
    assert (
        "  AUDIT pilotfish-system/audit-all: 1 rule(s) "
        "(mesh-wide (no selector in the root namespace pilotfish-system))"
    ) in out
    assert "  not applied: ALLOW shop/gateway-only (targetRefs bind it to gateways)" in out
    assert any(line.startswith("  shop/jwt: issuers https://issuer.example") for line in out)


def test_composed_peer_authentication(capsys: pytest.CaptureFixture[str]) -> None:
    files = ["-f", str(CASES / "peer-authentication.in.yaml")]
    assert main(["authz", "check", "shop/web-2", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "PeerAuthentication: DISABLE, port 9090: STRICT" in out
    assert "  shop/edge: DISABLE (selector tier=edge matches)" in out
    assert "  none: every request is allowed" in out
    assert main(["authz", "check", "shop/nobody", *files]) == 0
    assert "no Pod shop/nobody" in capsys.readouterr().out


def test_custom_policies_name_their_provider(capsys: pytest.CaptureFixture[str]) -> None:
    files = ["-f", str(CASES / "ext-authz.in.yaml")]
    assert main(["authz", "check", "shop/web-1", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        "  CUSTOM shop/admin-check: 1 rule(s), asks ext-authz.shop.svc.cluster.local:8000 "
        "(HTTP) (selector app=web matches)"
    ) in out
    assert main(["authz", "check", "shop/legacy-1", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        "  CUSTOM shop/legacy-check: 1 rule(s), fails closed, its rules deny: provider 'opa' "
        "is not among the mesh config's extensionProviders (selector app=legacy matches)"
    ) in out

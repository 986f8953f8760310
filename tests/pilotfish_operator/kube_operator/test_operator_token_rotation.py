"""A rotated service-account token keeps the operator running (issue 12).

In a pod the projected token expires (1 h) and the kubelet writes a new one into the
same file. An operator that read the token once got 401s on its Lease, lost
leadership, and kopf stopped ("Ran out of valid credentials"): kopf asks the login
handler again after a 401 and refuses credentials it has seen fail.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kube_emulator import Emulator
from mesh_objects import NS, objects
from test_operator_e2e import accepted
from test_operator_process import kubeconfig

from conftest import VS, Start, create, wait_for
from pilotfish_operator.kube import credentials

pytestmark = pytest.mark.kmock(cls=Emulator)


def rotate(token_file: Path, token: str) -> None:
    """As the kubelet does: the new token appears atomically."""
    tmp = token_file.with_suffix(".new")
    tmp.write_text(token)
    tmp.replace(token_file)


@pytest.mark.timeout(120)
async def test_a_rotated_token_keeps_the_operator_running(
    k8s: Any, start_operator: Start, tmp_path: Path
) -> None:
    for obj in objects():
        await create(k8s, obj)
    token = tmp_path / "token"
    token.write_text("token-1\n")
    k8s.tokens = {"token-1"}
    config = kubeconfig(tmp_path / "kubeconfig", str(k8s.url).rstrip("/"), token)
    operator = await start_operator(cfg=credentials.load(str(config)))
    await wait_for(lambda: accepted(k8s, VS, "reviews", 1), what="Accepted with token-1")
    await wait_for(lambda: operator.elector.is_leader, what="leadership")

    # The old token expires; the file already holds the new one.
    rotate(token, "token-2")
    k8s.tokens = {"token-2"}
    for resource in (VS, "v1/pods", "v1/services", "discovery.k8s.io/v1/endpointslices"):
        await k8s.expire_watches(resource)  # kopf must list again, with a valid token

    response = await k8s.patch(
        f"/apis/{VS}".replace("/virtualservices", f"/namespaces/{NS}/virtualservices/reviews"),
        json={"spec": {"http": [{"route": [{"destination": {"host": "reviews"}}]}]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 200, await response.text()
    await wait_for(lambda: accepted(k8s, VS, "reviews", 2), within=30, what="seen and Accepted")
    await asyncio.sleep(1.0)  # several Lease renewals with the new token
    assert operator.elector.is_leader
    assert operator.not_ready() is None

"""A VirtualService the translator fails on (a bug) is reported in its status with
reason TranslationFailed, and everything else is served."""

from __future__ import annotations

from typing import Any

import pytest
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, objects
from proxy_view import Proxy
from test_operator_e2e import ALL, EDS, status

from conftest import VS, Start, create, wait_for
from pilotfish_operator.translate import routes

pytestmark = pytest.mark.kmock(cls=Emulator)


async def test_translation_failure_is_reported_in_status(
    k8s: Any, start_operator: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    def buggy(*_: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(routes, "virtual_service_routes", buggy)
    for obj in objects():
        await create(k8s, obj)
    operator = await start_operator()

    def failed() -> bool:
        conditions = status(k8s, VS, "reviews").get("conditions") or [{}]
        return conditions[0].get("reason") == "TranslationFailed"

    await wait_for(failed, what="TranslationFailed")
    condition = status(k8s, VS, "reviews")["conditions"][0]
    assert condition["status"] == "False"
    assert "could not be translated (ZeroDivisionError: division by zero)" in condition["message"]
    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, EDS) as proxy:
        config = await proxy.until(lambda c: ALL in c.clusters, what="the service still served")
    assert config.weights("9080", "reviews") == {ALL: 100}  # its default route
    assert operator.pipeline.failures.keys() == {("VirtualService", NS, "reviews")}

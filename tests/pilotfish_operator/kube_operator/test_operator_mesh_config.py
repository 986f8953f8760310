"""The operator reads the mesh config ConfigMap by name: a CUSTOM policy's provider
appears in the workload's listener once the ConfigMap names it, an invalid edit is
refused with the field path and the last good config kept, deleting it fails closed."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import yaml
from kube_emulator import Emulator
from mesh_objects import CLIENT_NODE, NS, objects
from proxy_view import Proxy

from conftest import Start, create, wait_for
from pilotfish_operator.kube import mesh_config as mesh_config_reader
from pilotfish_xds.debug import render_config

pytestmark = pytest.mark.kmock(cls=Emulator)

PATH = "/api/v1/namespaces/pilotfish-system/configmaps/pilotfish-mesh"
EXT_AUTHZ = "envoy.filters.http.ext_authz"


def configmap(mesh: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "pilotfish-mesh", "namespace": "pilotfish-system"},
        "data": {"mesh": mesh if isinstance(mesh, str) else yaml.safe_dump(mesh)},
    }


def provider(port: int) -> dict[str, Any]:
    service = f"reviews.{NS}.svc.cluster.local"
    return {"name": "authz", "envoyExtAuthzHttp": {"service": service, "port": port}}


@pytest.mark.timeout(120)
async def test_mesh_config_edits_reach_the_proxy(
    k8s: Any,
    start_operator: Start,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(mesh_config_reader, "EVERY", 0.1)
    for obj in objects():
        await create(k8s, obj)
    await k8s.post(
        f"/apis/security.istio.io/v1/namespaces/{NS}/authorizationpolicies",
        json={
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "ext", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "productpage"}},
                "action": "CUSTOM",
                "provider": {"name": "authz"},
                "rules": [{"to": [{"operation": {"paths": ["/admin/*"]}}]}],
            },
        },
    )
    await k8s.post(
        "/api/v1/namespaces/pilotfish-system/configmaps",
        json=configmap({"extensionProviders": [provider(9080)]}),
    )
    operator = await start_operator()

    def listeners() -> str:
        if operator.cache.get(CLIENT_NODE) is None:
            return ""
        return render_config(operator.cache, CLIENT_NODE, "listeners")

    def ext_authz_cluster() -> str | None:
        text = listeners()
        if EXT_AUTHZ not in text:
            return None
        return next(line.split()[-1] for line in text.splitlines() if "cluster: outbound" in line)

    # A connected proxy: the control plane builds a node's snapshot while it listens.
    async with Proxy(f"127.0.0.1:{operator.xds_port}", CLIENT_NODE, []) as proxy:
        await proxy.until(lambda c: bool(c.listeners), what="listeners")
        found = await wait_for(ext_authz_cluster, what="the ext_authz filter")
        assert found == f"outbound|9080||reviews.{NS}.svc.cluster.local"

        # An invalid edit: refused by name and field, the last good mesh config kept.
        caplog.set_level(logging.ERROR)
        await k8s.put(PATH, json=configmap({"extensionProviders": [provider(0)]}))
        await wait_for(lambda: "extensionProviders[0].envoyExtAuthzHttp.port" in caplog.text)
        assert "ConfigMap pilotfish-system/pilotfish-mesh" in caplog.text
        assert ext_authz_cluster() == found

        # Gone: the policy fails closed (a DENY for its rules), no ext_authz filter.
        await k8s.delete(PATH)
        await wait_for(
            lambda: (text := listeners()) and EXT_AUTHZ not in text, what="the filter removed"
        )

"""A Gateway API certificateRef to another namespace in a cluster: with a ReferenceGrant
there, the operator reads that one Secret by name from that namespace, serves it to the
Gateway's pods by SDS and reports the listener Programmed; without the grant the
listener is RefNotPermitted and the certificate is no longer served."""

from __future__ import annotations

from typing import Any

import pytest
from kube_emulator import Emulator
from mesh_objects import NS, objects, pod
from test_operator_gateway import tls_secret
from test_operator_gateway_api import GATEWAYS, GROUP

from conftest import Start, create, wait_for
from pilotfish_operator.kube import gateway_secrets
from pilotfish_xds import types

pytestmark = pytest.mark.kmock(cls=Emulator)

CERTS = "certs"
NODE = f"web-gateway-1.{NS}"
SDS_NAME = f"kubernetes-gateway://{CERTS}/shop-cert"
GRANTS = f"/apis/{GROUP}/v1beta1/namespaces/{CERTS}/referencegrants"


def listener_conditions(k8s: Any) -> dict[str, tuple[str, str]]:
    status = (k8s.objects[GATEWAYS, NS, "web"] or {}).get("status") or {}
    listeners = status.get("listeners") or [{}]
    return {c["type"]: (c["status"], c["reason"]) for c in listeners[0].get("conditions") or []}


@pytest.mark.timeout(120)
async def test_a_granted_certificate_of_another_namespace_is_served(
    k8s: Any, start_operator: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_secrets, "EVERY", 0.1)
    for obj in objects():
        await create(k8s, obj)
    await create(k8s, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CERTS}})
    secret = tls_secret("www.example.com")
    secret["metadata"]["namespace"] = CERTS
    await create(k8s, secret)
    labels = {f"{GROUP}/gateway-name": "web", "pilotfish.io/proxy": "gateway"}
    await create(k8s, pod("web-gateway-1", "10.0.0.60", labels, 8443))
    ref = {"name": "shop-cert", "namespace": CERTS}
    listener = {
        "name": "https",
        "port": 8443,
        "protocol": "HTTPS",
        "tls": {"mode": "Terminate", "certificateRefs": [ref]},
    }
    await create(
        k8s,
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Gateway",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"gatewayClassName": "pilotfish", "listeners": [listener]},
        },
    )
    grant = {
        "apiVersion": f"{GROUP}/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "gateways", "namespace": CERTS},
        "spec": {
            "from": [{"group": GROUP, "kind": "Gateway", "namespace": NS}],
            "to": [{"group": "", "kind": "Secret", "name": "shop-cert"}],
        },
    }
    await create(k8s, grant)
    operator = await start_operator(security=True)

    def served() -> bool:
        snapshot = operator.cache.get(NODE)
        return snapshot is not None and SDS_NAME in snapshot.resources(types.SECRET)

    operator.cache.stream_opened(NODE, {"id": NODE})
    try:
        await wait_for(served, what="the granted certificate by SDS")
        snapshot = operator.cache.get(NODE)
        assert snapshot is not None and "0.0.0.0_8443" in snapshot.resources(types.LISTENER)
        await wait_for(
            lambda: listener_conditions(k8s).get("Programmed") == ("True", "Programmed"),
            what="the listener Programmed",
        )
        assert listener_conditions(k8s)["ResolvedRefs"] == ("True", "ResolvedRefs")
        # Of the granted namespace, only that Secret is read, by name.
        reads = {r.url.path for r in k8s["get", k8s.resource("v1/secrets")]}
        assert {p for p in reads if f"/namespaces/{CERTS}/" in p} == {
            f"/api/v1/namespaces/{CERTS}/secrets/shop-cert"
        }, reads

        # The grant withdrawn: refused, and the certificate is no longer served.
        await k8s.delete(f"{GRANTS}/gateways")
        await wait_for(lambda: not served(), what="the certificate withdrawn")
        await wait_for(
            lambda: listener_conditions(k8s).get("ResolvedRefs") == ("False", "RefNotPermitted"),
            what="the listener RefNotPermitted",
        )
    finally:
        operator.cache.stream_closed(NODE)

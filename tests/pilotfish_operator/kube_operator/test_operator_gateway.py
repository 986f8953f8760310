"""A gateway in a cluster: the operator reads the Secret a Gateway server names
(credentialName) by name from the gateway pod's namespace, serves it to that gateway
by SDS, follows an edit, and drops the HTTPS server when the Secret goes."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from kube_emulator import Emulator
from mesh_objects import NS, objects, pod

from conftest import Start, create, wait_for
from pilotfish_operator.kube import gateway_secrets
from pilotfish_operator.security import pki
from pilotfish_xds import types

pytestmark = pytest.mark.kmock(cls=Emulator)

GATEWAY_NODE = f"ingressgateway-1.{NS}"
SDS_NAME = "kubernetes://shop-cert"
SECRET_PATH = f"/api/v1/namespaces/{NS}/secrets/shop-cert"


def tls_secret(host: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    ca = pki.new_ca(now, day, pki.name("edge CA"))
    cert, key = pki.new_leaf(ca[0], ca[1], [x509.DNSName(host)], now, day, pki.name(host))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-cert", "namespace": NS},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert.decode(), "tls.key": key.decode()},
    }


@pytest.mark.timeout(120)
async def test_gateway_certificates_come_from_the_named_secret(
    k8s: Any, start_operator: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_secrets, "EVERY", 0.1)
    for obj in objects():
        await create(k8s, obj)
    labels = {"istio": "ingressgateway", "pilotfish.io/proxy": "gateway"}
    await create(k8s, pod("ingressgateway-1", "10.0.0.50", labels, 8443))
    await k8s.post(
        f"/apis/networking.istio.io/v1/namespaces/{NS}/gateways",
        json={
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "secure", "namespace": NS},
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": 8443, "name": "https", "protocol": "HTTPS"},
                        "hosts": ["reviews.example.com"],
                        "tls": {"mode": "SIMPLE", "credentialName": "shop-cert"},
                    }
                ],
            },
        },
    )
    await create(k8s, tls_secret("reviews.example.com"))
    # Keys are served only over authenticated TLS xDS (never in plaintext mode).
    operator = await start_operator(security=True)

    def secret_version() -> str | None:
        snapshot = operator.cache.get(GATEWAY_NODE)
        if snapshot is None or SDS_NAME not in snapshot.resources(types.SECRET):
            return None
        return snapshot.version(types.SECRET)

    # The gateway's stream as the xDS server records it once authenticated (the TLS and
    # token path itself: test_operator_security.py).
    operator.cache.stream_opened(GATEWAY_NODE, {"id": GATEWAY_NODE})
    try:
        first = await wait_for(secret_version, what="the gateway's certificate by SDS")
        snapshot = operator.cache.get(GATEWAY_NODE)
        assert snapshot is not None
        assert "127.0.0.1_8443" not in snapshot.resources(types.LISTENER)
        assert "0.0.0.0_8443" in snapshot.resources(types.LISTENER)
        # Of the gateway's namespace, only the named Secret (and its CA companion) is
        # read, by name: nothing lists or watches Secrets.
        reads = {r.url.path for r in k8s["get", k8s.resource("v1/secrets")]}
        ours = {p for p in reads if p.startswith(f"/api/v1/namespaces/{NS}/")}
        assert ours == {SECRET_PATH, SECRET_PATH + "-cacert"}, reads

        # Rotated: the new certificate goes out (listeners untouched).
        listeners = snapshot.version(types.LISTENER)
        current = k8s.objects["v1/secrets", NS, "shop-cert"]
        rotated = tls_secret("reviews.example.com")
        rotated["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
        response = await k8s.put(SECRET_PATH, json=rotated)
        assert response.status == 200, await response.text()
        await wait_for(lambda: (v := secret_version()) is not None and v != first, what="rotation")
        snapshot = operator.cache.get(GATEWAY_NODE)
        assert snapshot is not None and snapshot.version(types.LISTENER) == listeners

        # Gone: the HTTPS server is no longer served (nothing to present).
        await k8s.delete(SECRET_PATH)

        def dropped() -> bool:
            found = operator.cache.get(GATEWAY_NODE)
            return found is not None and "0.0.0.0_8443" not in found.resources(types.LISTENER)

        await wait_for(dropped, what="the HTTPS server dropped")
    finally:
        operator.cache.stream_closed(GATEWAY_NODE)

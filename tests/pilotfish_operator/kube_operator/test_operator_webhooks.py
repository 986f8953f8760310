"""`pilotfish operator` with its admission webhooks, against the emulator: the
serving certificate is generated into a Secret, its CA patched into every entry of
both webhook configurations, and the webhooks answer over HTTPS with it."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kube_emulator import Emulator

from conftest import Start, create, free_port, wait_for
from pilotfish_operator.webhook.service import webhooks

pytestmark = pytest.mark.kmock(cls=Emulator)

MUTATING = "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
VALIDATING = "admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
SERVICE = {"namespace": "pilotfish-system", "name": "pilotfish", "path": "/inject"}


def _webhook(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": {"service": SERVICE},
        "admissionReviewVersions": ["v1"],
        "sideEffects": "NoneOnDryRun",
    }


def _ca(k8s: Any, resource: str, name: str) -> set[str]:
    with contextlib.suppress(KeyError):
        hooks = k8s.objects[resource, None, name].get("webhooks") or []
        return {h.get("clientConfig", {}).get("caBundle", "") for h in hooks}
    return set()


@contextlib.asynccontextmanager
async def https(ca_pem: bytes) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


def review(obj: dict[str, Any], kind: dict[str, str], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "4d1c",
            "kind": kind,
            "resource": {"group": kind["group"], "version": kind["version"], "resource": "x"},
            "namespace": namespace,
            "operation": "CREATE",
            "object": obj,
            "dryRun": False,
        },
    }


async def test_operator_serves_webhooks_with_a_generated_certificate(
    k8s: Any, start_operator: Start
) -> None:
    await k8s.post(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        json={
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "pilotfish-sidecar-injector"},
            "webhooks": [
                _webhook("sidecar-injector.pilotfish.io"),
                _webhook("opt-in.sidecar-injector.pilotfish.io"),
            ],
        },
    )
    await k8s.post(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        json={
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "pilotfish-validator"},
            "webhooks": [_webhook("validation.pilotfish.io")],
        },
    )
    await create(
        k8s,
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"mesh-injection": "enabled"}},
        },
    )
    port = free_port()
    operator = await start_operator()
    # The fixture's operator runs without side services: add the webhooks the way
    # `pilotfish operator` does, against the same emulator and store.
    async with webhooks(
        operator.client,
        operator.store,
        address=f"127.0.0.1:{port}",
        namespace="pilotfish-system",
        cert_secret="pilotfish-webhook-certs",
        cert_dir=None,
        injection_template=None,
        cluster_domain="cluster.local",
    ):
        bundles = await wait_for(
            lambda: (
                (m := _ca(k8s, MUTATING, "pilotfish-sidecar-injector"))
                and "" not in m
                and m | _ca(k8s, VALIDATING, "pilotfish-validator")
            ),
            what="caBundle in every webhook entry",
        )
        assert len(bundles) == 1  # the same CA everywhere
        ca = base64.b64decode(bundles.pop())
        secret = k8s.objects["v1/secrets", "pilotfish-system", "pilotfish-webhook-certs"]
        assert secret["data"]  # the certificate survives restarts and is shared by replicas

        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "web-", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "web"}]},
        }
        vs = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "hosts": ["web"],
                "http": [{"route": [{"destination": {"host": "web"}, "weight": -1}]}],
            },
        }
        base = f"https://127.0.0.1:{port}"
        async with https(ca) as session:
            # The certificate is valid for the Service's name, as the API server checks.
            async with session.post(
                f"{base}/inject",
                json=review(pod, {"group": "", "version": "v1", "kind": "Pod"}, "shop"),
                server_hostname="pilotfish.pilotfish-system.svc",
            ) as r:
                injected = (await r.json())["response"]
            async with session.post(
                f"{base}/validate",
                json=review(
                    vs,
                    {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
                    "shop",
                ),
                server_hostname="pilotfish.pilotfish-system.svc",
            ) as r:
                validated = (await r.json())["response"]
    assert injected["allowed"] is True
    patch = json.loads(base64.b64decode(injected["patch"]))
    values = [op.get("value") for op in patch]
    items = [v for value in values for v in (value if isinstance(value, list) else [value])]
    names = {v.get("name") for v in items if isinstance(v, dict)}
    assert {"pilotfish-proxy", "pilotfish-init"} <= names
    assert validated["allowed"] is False
    assert "spec.http[0].route[0].weight: must be >= 0" in validated["status"]["message"]


@pytest.mark.timeout(60)
async def test_a_webhook_configuration_replaced_after_start_gets_the_ca_back(
    k8s: Any, start_operator: Start
) -> None:
    """`helm upgrade` (or a re-apply) writes the configurations without caBundle: the
    operator watches them and patches the CA back at once, not at its hourly refresh."""
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "pilotfish-sidecar-injector"},
        "webhooks": [_webhook("sidecar-injector.pilotfish.io")],
    }
    await k8s.post(path, json=config)
    operator = await start_operator()
    async with webhooks(
        operator.client,
        operator.store,
        address=f"127.0.0.1:{free_port()}",
        namespace="pilotfish-system",
        cert_secret="pilotfish-webhook-certs",
        cert_dir=None,
        injection_template=None,
        cluster_domain="cluster.local",
        on_configuration_change=operator.webhook_changed,
    ) as server:
        assert server.serving is not None
        ca = base64.b64encode(server.serving.ca_bundle).decode()
        await wait_for(lambda: _ca(k8s, MUTATING, "pilotfish-sidecar-injector") == {ca})

        # Replaced with the chart's content: no caBundle, and a second entry.
        replaced = {
            **config,
            "webhooks": [
                _webhook("sidecar-injector.pilotfish.io"),
                _webhook("opt-in.sidecar-injector.pilotfish.io"),
            ],
        }
        response = await k8s.put(f"{path}/pilotfish-sidecar-injector", json=replaced)
        assert response.status == 200, await response.text()
        await wait_for(
            lambda: _ca(k8s, MUTATING, "pilotfish-sidecar-injector") == {ca},
            within=10,
            what="the CA patched back into both entries",
        )
        # Deleted and created again (kubectl replace --force): the same.
        await k8s.delete(f"{path}/pilotfish-sidecar-injector")
        await k8s.post(path, json=config)
        await wait_for(
            lambda: _ca(k8s, MUTATING, "pilotfish-sidecar-injector") == {ca},
            within=10,
            what="the CA in the re-created configuration",
        )
    assert len(k8s.objects[MUTATING, None, "pilotfish-sidecar-injector"]["webhooks"]) == 1

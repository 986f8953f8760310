"""Gateway pods deployed for a Gateway API Gateway in a cluster, as Istio does: the
operator creates a ServiceAccount, a Deployment (a gateway pod with the injection
placeholder) and a Service (LoadBalancer, the listeners' ports), all owned by the
Gateway; a listener added changes them; the Gateway's status addresses come from the
Service (its cluster IP, then its load balancer's). A Gateway marked for manual
deployment gets nothing. Every call it makes is allowed by the chart's RBAC."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kube_emulator import Emulator
from mesh_objects import NS, objects
from test_operator_gateway_api import GATEWAYS, GROUP
from test_operator_rbac import NON_RESOURCE, TOKEN, allowed, attributes, chart_rules, ours

from conftest import Start, create, wait_for

pytestmark = pytest.mark.kmock(cls=Emulator)

NAME = "web-pilotfish"
DEPLOYMENTS, SERVICES, ACCOUNTS = "apps/v1/deployments", "v1/services", "v1/serviceaccounts"


def gateway(name: str, listeners: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": NS, **meta},
        "spec": {
            "gatewayClassName": "pilotfish",
            "listeners": listeners,
            "infrastructure": {"labels": {"team": "edge"}},
        },
    }


def found(k8s: Any, resource: str, name: str = NAME) -> dict[str, Any] | None:
    try:
        obj = k8s.objects[resource, NS, name]
    except KeyError:
        return None
    return dict(obj) if obj else None


def service_ports(k8s: Any) -> list[int] | None:
    svc = found(k8s, SERVICES)
    return [p["port"] for p in svc["spec"]["ports"]] if svc else None


def addresses(k8s: Any) -> list[dict[str, str]] | None:
    status = (found(k8s, GATEWAYS, "web") or {}).get("status") or {}
    return status.get("addresses")


HTTP = {"name": "http", "port": 80, "protocol": "HTTP"}


@pytest.mark.timeout(120)
async def test_a_gateway_gets_its_deployment_service_and_account(
    k8s: Any, start_operator: Start
) -> None:
    for obj in objects():
        await create(k8s, obj)
    await create(k8s, gateway("web", [HTTP]))
    await create(k8s, gateway("manual", [HTTP], annotations={"pilotfish.io/deployment": "manual"}))
    k8s.tokens = {TOKEN}
    cfg = kubernetes.client.Configuration()
    cfg.host = str(k8s.url).rstrip("/")
    cfg.api_key["BearerToken"] = f"Bearer {TOKEN}"
    await start_operator(cfg=cfg)
    uid = found(k8s, GATEWAYS, "web")["metadata"]["uid"]  # type: ignore[index]

    await wait_for(lambda: service_ports(k8s) == [15021, 80], what="the Service")
    deployment, service, account = (found(k8s, r) for r in (DEPLOYMENTS, SERVICES, ACCOUNTS))
    assert deployment is not None and service is not None and account is not None
    for obj in (deployment, service, account):
        meta = obj["metadata"]
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "Gateway",
            "web",
            uid,
            True,
        )
        assert meta["labels"][f"{GROUP}/gateway-name"] == "web"
        assert meta["labels"]["team"] == "edge"  # spec.infrastructure.labels
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {
        f"{GROUP}/gateway-name": "web",
        "pilotfish.io/proxy": "gateway",
        "team": "edge",
    }
    assert template["spec"]["serviceAccountName"] == NAME
    (container,) = template["spec"]["containers"]
    assert (container["name"], container["image"]) == ("pilotfish-proxy", "auto")
    assert [p["containerPort"] for p in container["ports"]] == [80]
    assert deployment["spec"]["replicas"] == 1
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["selector"] == {f"{GROUP}/gateway-name": "web"}
    # Manual deployment: nothing made.
    assert found(k8s, DEPLOYMENTS, "manual-pilotfish") is None
    assert found(k8s, SERVICES, "manual-pilotfish") is None

    # A listener added: the Service and the pod's ports follow.
    https = {"name": "tls", "port": 443, "protocol": "TLS", "tls": {"mode": "Passthrough"}}
    response = await k8s.patch(
        f"/apis/{GROUP}/v1/namespaces/{NS}/gateways/web",
        json={"spec": {"listeners": [HTTP, https]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 200, await response.text()
    await wait_for(lambda: service_ports(k8s) == [15021, 80, 443], what="port 443 added")
    await wait_for(
        lambda: (
            [
                p["containerPort"]
                for p in found(k8s, DEPLOYMENTS)["spec"]["template"]["spec"]["containers"][0][
                    "ports"
                ]  # type: ignore[index]
            ]
            == [80, 443]
        ),
        what="the pod's ports",
    )

    # Status addresses: the Service's cluster IP, then its load balancer's address.
    path = f"/api/v1/namespaces/{NS}/services/{NAME}"
    merge = {"Content-Type": "application/merge-patch+json"}
    await k8s.patch(path, json={"spec": {"clusterIP": "10.96.0.20"}}, headers=merge)
    await wait_for(
        lambda: addresses(k8s) == [{"type": "IPAddress", "value": "10.96.0.20"}],
        what="the cluster IP as the Gateway's address",
    )
    lb = {"status": {"loadBalancer": {"ingress": [{"hostname": "web.lb.example.com"}]}}}
    await k8s.patch(path, json=lb, headers=merge)
    await wait_for(
        lambda: addresses(k8s) == [{"type": "Hostname", "value": "web.lb.example.com"}],
        what="the load balancer's hostname as the Gateway's address",
    )

    # Every call the deployer made is granted by the chart.
    cluster, _ = chart_rules()
    calls = {
        attributes(str(r.method.value).upper(), r.url.path, bool(r.params.get("watch")))
        for r in ours(k8s)
        if r.url.path not in NON_RESOURCE
    }
    written = {
        c
        for c in calls
        if c is not None and c.resource in ("deployments", "services", "serviceaccounts")
    }
    assert {(c.resource, c.verb) for c in written} >= {
        ("deployments", "create"),
        ("deployments", "patch"),
        ("services", "create"),
        ("services", "patch"),
        ("serviceaccounts", "create"),
    }
    assert [str(c) for c in written if not allowed(c, cluster)] == []

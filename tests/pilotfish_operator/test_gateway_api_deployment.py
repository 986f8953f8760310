"""What is deployed for a Gateway API Gateway (translate/gateway_api/deployment.py):
which Gateways get a deployment, the objects' ports and hashes, the Service type
annotation, and the Gateway's addresses from its Service."""

from __future__ import annotations

from typing import Any

from pilotfish_operator.api import Pod, Service, parse
from pilotfish_operator.api.gateway_api import KubernetesGateway
from pilotfish_operator.store import Store
from pilotfish_operator.translate.gateway_api import deployment
from pilotfish_operator.webhook.inject import PROXY_NAME

GROUP = "gateway.networking.k8s.io"


def gw(name: str = "web", listeners: tuple[int, ...] = (80,), **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": "shop", "uid": "u-1", **extra.pop("meta", {})}
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gateway",
        "metadata": meta,
        "spec": {
            "gatewayClassName": "pilotfish",
            "listeners": [
                {"name": f"l{i}", "port": p, "protocol": "HTTP", "hostname": f"h{i}.example"}
                for i, p in enumerate(listeners)
            ],
            **extra,
        },
    }


def model(obj: dict[str, Any]) -> KubernetesGateway:
    found = parse(obj)
    assert isinstance(found, KubernetesGateway)
    return found


def test_the_placeholder_is_the_one_the_webhook_fills() -> None:
    assert deployment.PROXY_CONTAINER == PROXY_NAME


def test_which_gateways_get_a_deployment() -> None:
    store = Store()
    store.apply(gw("auto"))
    store.apply(gw("manual", meta={"annotations": {deployment.MANUAL: "manual"}}))
    store.apply(gw("addressed", addresses=[{"type": "Hostname", "value": "gw.shop.svc"}]))
    other = gw("theirs")
    other["spec"]["gatewayClassName"] = "someone-else"
    store.apply(other)
    assert [g.name for g in deployment.deployed(store)] == ["auto"]


def test_objects_follow_the_listeners() -> None:
    one = deployment.manifests(model(gw(listeners=(80, 80, 443))))
    assert [o["kind"] for o in one] == ["ServiceAccount", "Deployment", "Service"]
    service = one[2]
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [
        ("status-port", 15021),
        ("http-80", 80),
        ("http-443", 443),
    ]
    assert service["spec"]["type"] == "LoadBalancer"
    same = deployment.manifests(model(gw(listeners=(80, 80, 443))))
    other = deployment.manifests(model(gw(listeners=(80,))))
    hashes = [
        [o["metadata"]["annotations"][deployment.HASH] for o in m] for m in (one, same, other)
    ]
    assert hashes[0] == hashes[1]
    assert hashes[0][1:] != hashes[2][1:]  # Deployment and Service change, not the account
    internal = gw(meta={"annotations": {deployment.SERVICE_TYPE: "ClusterIP"}})
    assert deployment.manifests(model(internal))[2]["spec"]["type"] == "ClusterIP"


def service(**status: Any) -> Service:
    found = parse(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web-pilotfish",
                "namespace": "shop",
                "labels": {deployment.GATEWAY_NAME_LABEL: "web"},
            },
            "spec": {"clusterIP": "10.96.0.9"},
            "status": status,
        }
    )
    assert isinstance(found, Service)
    return found


def test_addresses_come_from_the_service_else_the_pods() -> None:
    web = model(gw())
    pod = parse(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "shop"},
            "status": {"podIP": "10.1.0.5"},
        }
    )
    assert isinstance(pod, Pod)
    key = ("shop", "web-pilotfish")
    assert deployment.addresses(web, {}, [pod]) == [("IPAddress", "10.1.0.5")]
    assert deployment.addresses(web, {key: service()}, [pod]) == [("IPAddress", "10.96.0.9")]
    lb = {"loadBalancer": {"ingress": [{"ip": "203.0.113.4"}, {"hostname": "lb.example"}]}}
    assert deployment.addresses(web, {key: service(**lb)}, [pod]) == [
        ("IPAddress", "203.0.113.4"),
        ("Hostname", "lb.example"),
    ]

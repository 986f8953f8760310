"""The chart's gateways: what Istio Gateways select, what the injector fills in, what the
values change. (That the pod really runs as a gateway: the operator test
kube_operator/test_operator_chart_gateway.py.)"""

from __future__ import annotations

from typing import Any

from chartrender import documents, find, render

INGRESS = "pilotfish-ingressgateway"
EGRESS = "pilotfish-egressgateway"


def named(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """kind → name for every object of that name."""
    return {d["kind"]: d["metadata"]["name"] for d in docs if d["metadata"]["name"] == name}


def test_ingress_gateway_by_default() -> None:
    docs = documents(render())
    assert set(named(docs, INGRESS)) == {
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    assert not named(docs, EGRESS)
    deployment = find(docs, "Deployment", INGRESS)
    pod = deployment["spec"]["template"]
    # Istio's Gateways select it unchanged; the injector knows it for a gateway.
    assert pod["metadata"]["labels"]["istio"] == "ingressgateway"
    assert pod["metadata"]["labels"]["pilotfish.io/proxy"] == "gateway"
    assert pod["spec"]["serviceAccountName"] == INGRESS
    # Only the placeholder the injector replaces: no capture init container.
    assert "initContainers" not in pod["spec"]
    (container,) = pod["spec"]["containers"]
    assert (container["name"], container["image"]) == ("pilotfish-proxy", "auto")
    assert {p["containerPort"] for p in container["ports"]} == {80, 443}
    sysctls = pod["spec"]["securityContext"]["sysctls"]
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in sysctls
    # The HPA owns the replica count.
    assert "replicas" not in deployment["spec"]
    hpa = find(docs, "HorizontalPodAutoscaler", INGRESS)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": INGRESS}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
    (metric,) = hpa["metrics"]
    assert metric["resource"]["target"]["averageUtilization"] == 80

    service = find(docs, "Service", INGRESS)["spec"]
    assert service["type"] == "LoadBalancer"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]} == {
        "status-port": (15021, 15021),
        "http2": (80, 80),
        "https": (443, 443),
    }
    # The Service, the PDB and the Deployment select the same pods, and only them.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["selector"] == selector
    assert find(docs, "PodDisruptionBudget", INGRESS)["spec"]["selector"]["matchLabels"] == selector
    assert selector.items() <= pod["metadata"]["labels"].items()
    operator = find(docs, "Deployment", "pilotfish")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= operator.items()


def test_gateway_values() -> None:
    docs = documents(
        render(
            "--set",
            "gateways.ingress.enabled=false",
            "--set",
            "gateways.egress.enabled=true",
            "--set",
            "gateways.egress.autoscaling.enabled=false",
            "--set",
            "gateways.egress.replicas=3",
            "--set",
            "gateways.egress.podDisruptionBudget.minAvailable=2",
            "--set",
            "gateways.egress.service.annotations.team=edge",
            "--set",
            "gateways.egress.resources.requests.cpu=500m",
        )
    )
    assert not named(docs, INGRESS)
    assert set(named(docs, EGRESS)) == {
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }
    deployment = find(docs, "Deployment", EGRESS)
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["istio"] == "egressgateway"
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == "500m"
    service = find(docs, "Service", EGRESS)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["metadata"]["annotations"] == {"team": "edge"}
    assert find(docs, "PodDisruptionBudget", EGRESS)["spec"] == {
        "minAvailable": 2,
        "selector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
    }

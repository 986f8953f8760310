"""What is deployed for a Gateway API Gateway of ours, as Istio does: a ServiceAccount,
a Deployment of gateway pods and a Service, named `<gateway>-<class>`, owned by the
Gateway (deleting it removes them). In a cluster the operator keeps them
(`kube/gateway_deployer.py`); local mode runs a gateway pod itself
(`local/gateways.py`).

Not deployed (the user's own pods labelled with the Gateway's name serve it, as
before): a Gateway annotated `pilotfish.io/deployment: manual`, or one with
`spec.addresses` (Istio's sign of a manual deployment).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from ...api import Pod, Service
from ...api.gateway_api import CLASS_NAMES, CONTROLLER, GROUP, GatewayClass, KubernetesGateway
from ...injection import GATEWAY_LABEL
from ...store import Store

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
"""The label binding a pod to a Gateway API Gateway of its namespace (Istio's too)."""
PROXY_CONTAINER = "pilotfish-proxy"
"""The placeholder container the injection webhook fills in (its `PROXY_NAME`)."""

MANUAL = "pilotfish.io/deployment"
"""Annotation: `manual` keeps the operator from deploying anything for the Gateway."""
SERVICE_TYPE = "networking.istio.io/service-type"
"""Annotation (Istio's): the Service's type; LoadBalancer without it."""
CLASS_LABEL = "gateway.networking.k8s.io/gateway-class-name"
MANAGED_BY = "app.kubernetes.io/managed-by"
HASH = "pilotfish.io/deployed-hash"
"""Annotation on what is deployed: the hash of what we last wrote, so an unchanged
Gateway costs one read per object, not a write."""
STATUS_PORT = 15021


def ours(gw: KubernetesGateway, classes: dict[str, GatewayClass]) -> bool:
    cls = classes.get(gw.spec.gateway_class_name)
    if cls is not None:
        return cls.spec.controller_name == CONTROLLER
    return gw.spec.gateway_class_name in CLASS_NAMES


def deployed(store: Store) -> list[KubernetesGateway]:
    """The Gateways of ours that get a deployment, by namespace/name."""
    classes = {c.name: c for c in store.of_kind("GatewayClass") if isinstance(c, GatewayClass)}
    return sorted(
        (
            g
            for g in store.of_kind("KubernetesGateway")
            if isinstance(g, KubernetesGateway)
            and ours(g, classes)
            and g.metadata.annotations.get(MANUAL) != "manual"
            and not g.spec.addresses
        ),
        key=lambda g: g.key,
    )


def name_of(gw: KubernetesGateway) -> str:
    return f"{gw.name}-{gw.spec.gateway_class_name}"


def ports(gw: KubernetesGateway) -> list[tuple[str, int]]:
    """(name, number) of each port the listeners use, once (Istio's `<protocol>-<port>`)."""
    out: dict[int, str] = {}
    for listener in gw.spec.listeners:
        out.setdefault(listener.port, f"{listener.protocol.lower()}-{listener.port}")
    return [(name, port) for port, name in sorted(out.items())]


def pod_labels(gw: KubernetesGateway) -> dict[str, str]:
    return {GATEWAY_NAME_LABEL: gw.name, GATEWAY_LABEL: "gateway"}


def _metadata(gw: KubernetesGateway, extra: dict[str, str] | None = None) -> dict[str, Any]:
    infra = gw.spec.infrastructure
    labels = {
        **(infra.labels if infra else {}),
        GATEWAY_NAME_LABEL: gw.name,
        CLASS_LABEL: gw.spec.gateway_class_name,
        MANAGED_BY: "pilotfish",
    }
    annotations = {**(infra.annotations if infra else {}), **(extra or {})}
    owner = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gateway",
        "name": gw.name,
        "uid": gw.metadata.uid or "",
        "controller": True,
    }
    return {
        "name": name_of(gw),
        "namespace": gw.namespace,
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [owner],
    }


def manifests(gw: KubernetesGateway) -> list[dict[str, Any]]:
    """The ServiceAccount, Deployment and Service of a Gateway, each carrying the hash of
    its own content. The Deployment's pod has the placeholder proxy container the
    injection webhook fills in, as the chart's gateways (no replica count on updates:
    an autoscaler's or a user's stays)."""
    name = name_of(gw)
    infra = gw.spec.infrastructure
    selector = {GATEWAY_NAME_LABEL: gw.name}
    listed = ports(gw)
    template_labels = {**(infra.labels if infra else {}), **pod_labels(gw)}
    container = {
        "name": PROXY_CONTAINER,
        "image": "auto",
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in listed],
    }
    deployment_spec = {
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {
                "labels": template_labels,
                "annotations": dict(infra.annotations) if infra else {},
            },
            "spec": {
                "serviceAccountName": name,
                # Envoy runs as the proxy user: this lets it bind ports below 1024.
                "securityContext": {
                    "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
                },
                "containers": [container],
            },
        },
    }
    service_spec = {
        "type": gw.metadata.annotations.get(SERVICE_TYPE, "LoadBalancer"),
        "selector": selector,
        "ports": [
            {"name": "status-port", "port": STATUS_PORT, "targetPort": STATUS_PORT},
            *({"name": n, "port": p, "targetPort": p, "protocol": "TCP"} for n, p in listed),
        ],
    }
    out = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(gw)},
        {"apiVersion": "apps/v1", "kind": "Deployment", "spec": deployment_spec},
        {"apiVersion": "v1", "kind": "Service", "spec": service_spec},
    ]
    for obj in out:
        content = json.dumps([obj.get("spec"), _metadata(gw)], sort_keys=True)
        digest = hashlib.sha256(content.encode()).hexdigest()[:16]
        obj["metadata"] = _metadata(gw, {HASH: digest})
    return out


def addresses(
    gw: KubernetesGateway, services: dict[tuple[str, str], Service], pods: Iterable[Pod]
) -> list[tuple[str, str]]:
    """The Gateway's (type, value) addresses: its deployed Service's load balancer
    ingress, else that Service's cluster IP, else the IPs of the pods serving it."""
    svc = services.get((gw.namespace, name_of(gw)))
    if svc is not None and svc.metadata.labels.get(GATEWAY_NAME_LABEL) == gw.name:
        ingress = [
            ("IPAddress", i.ip) if i.ip else ("Hostname", i.hostname or "")
            for i in svc.status.load_balancer.ingress
            if i.ip or i.hostname
        ]
        if ingress:
            return ingress
        if svc.spec.cluster_ip and svc.spec.cluster_ip != "None":
            return [("IPAddress", svc.spec.cluster_ip)]
    return [("IPAddress", p.status.pod_ip or "") for p in pods if p.status.pod_ip]

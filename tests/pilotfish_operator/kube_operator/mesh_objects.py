"""A small mesh as a cluster would hold it: a client pod, a service with two versions
and EndpointSlices (one endpoint terminating), and Istio routing between versions."""

from __future__ import annotations

from typing import Any

NS = "shop"
CLIENT_NODE = f"productpage-1.{NS}"
REVIEWS = f"reviews.{NS}.svc.cluster.local"


def pod(name: str, ip: str, labels: dict[str, str], port: int = 9080) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "nodeName": "node-1",
            "serviceAccountName": "bookinfo",
            "containers": [{"name": "app", "ports": [{"containerPort": port}]}],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def endpoint(ip: str, pod_name: str, ready: bool, terminating: bool = False) -> dict[str, Any]:
    return {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": True, "terminating": terminating},
        "targetRef": {"kind": "Pod", "name": pod_name, "namespace": NS},
        "nodeName": "node-1",
    }


def virtual_service(weights: tuple[int, int] = (80, 20), **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": NS},
        "spec": spec
        or {
            "hosts": ["reviews"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v1"}, "weight": weights[0]},
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": weights[1]},
                    ]
                }
            ],
        },
    }


def objects() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pilotfish-system"}},
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "labels": {"mesh-injection": "enabled"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "node-1",
                "labels": {
                    "topology.kubernetes.io/region": "eu-west",
                    "topology.kubernetes.io/zone": "eu-west-1a",
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "bookinfo", "namespace": NS},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "reviews", "namespace": NS},
            "spec": {
                "clusterIP": "10.96.0.20",
                "selector": {"app": "reviews"},
                "ports": [{"name": "http", "port": 9080, "targetPort": 9080}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "productpage", "namespace": NS},
            "spec": {
                "clusterIP": "10.96.0.10",
                "selector": {"app": "productpage"},
                "ports": [{"name": "http", "port": 9080, "targetPort": 9080}],
            },
        },
        pod("productpage-1", "10.0.0.5", {"app": "productpage"}),
        pod("reviews-v1-1", "10.0.1.1", {"app": "reviews", "version": "v1"}),
        pod("reviews-v2-1", "10.0.1.2", {"app": "reviews", "version": "v2"}),
        pod("reviews-v2-2", "10.0.1.3", {"app": "reviews", "version": "v2"}),
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "reviews-abcde",
                "namespace": NS,
                "labels": {"kubernetes.io/service-name": "reviews"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
            "endpoints": [
                endpoint("10.0.1.1", "reviews-v1-1", ready=True),
                endpoint("10.0.1.2", "reviews-v2-1", ready=True),
                # Shutting down: Kubernetes clears `ready`, it still serves in-flight work.
                endpoint("10.0.1.3", "reviews-v2-2", ready=False, terminating=True),
            ],
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": NS},
            "spec": {
                "host": "reviews",
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        },
        virtual_service(),
    ]

"""Whether a pod gets a sidecar, with the reason (shared by local mode and the webhook)."""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE_LABEL = "mesh-injection"
POD_LABEL = "sidecar.pilotfish.io/inject"
GATEWAY_LABEL = "pilotfish.io/proxy"
"""`gateway`: the pod is a gateway proxy itself (its Envoy serves Gateways), never
given a sidecar. The webhook fills in its proxy container (no capture), in any
namespace but Kubernetes' own: the chart's gateways run in the control plane's."""
CONTROL_PLANE_NAMESPACE = "pilotfish-system"
XDS_TOKEN_AUDIENCE = "pilotfish"
"""The audience of the projected token an injected sidecar proves itself with."""
ROOT_CONFIGMAP = "pilotfish-ca-root-cert"
ROOT_CONFIGMAP_KEY = "root-cert.pem"
"""The mesh roots in every namespace (the operator writes it; sidecars mount it)."""
KUBERNETES_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
NEVER = KUBERNETES_NAMESPACES | {CONTROL_PLANE_NAMESPACE}


@dataclass(frozen=True)
class Decision:
    inject: bool
    reason: str
    """Machine-readable: namespace-enabled, pod-opt-in, pod-opt-out, namespace-not-enabled,
    system-namespace, gateway."""


def decide(
    namespace: str, namespace_labels: dict[str, str], pod_labels: dict[str, str]
) -> Decision:
    gateway = pod_labels.get(GATEWAY_LABEL) == "gateway"
    if namespace in (KUBERNETES_NAMESPACES if gateway else NEVER):
        return Decision(False, "system-namespace")
    if gateway:
        return Decision(False, "gateway")
    opt = pod_labels.get(POD_LABEL)
    if opt == "false":
        return Decision(False, "pod-opt-out")
    if opt == "true":
        return Decision(True, "pod-opt-in")
    if namespace_labels.get(NAMESPACE_LABEL) == "enabled":
        return Decision(True, "namespace-enabled")
    return Decision(False, "namespace-not-enabled")

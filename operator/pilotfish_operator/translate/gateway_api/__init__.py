"""The Kubernetes Gateway API on the Istio pipeline.

Gateway API objects become the Istio objects the rest of translation already knows
(as Istio itself does): each listener of a Gateway of our class is an Istio `Gateway`
server selecting the Gateway's pods, each route attached to it a `VirtualService`
bound to those listeners, and a route whose parent is a Service (GAMMA) a
`VirtualService` for that host at every sidecar. On the way, every parentRef, listener
and backend gets its verdict, which `status` turns into the Gateway API's conditions.
"""

from __future__ import annotations

from ..gateways import is_synthetic
from .convert import (
    Converted,
    certificate_granted,
    convert,
    selects,
)
from .deployment import GATEWAY_NAME_LABEL
from .status import statuses

READS = frozenset(
    {
        "GatewayClass",
        "KubernetesGateway",
        "HTTPRoute",
        "GRPCRoute",
        "TLSRoute",
        "TCPRoute",
        "ReferenceGrant",
        "Service",
        "Namespace",
        "Pod",
    }
)
"""The kinds conversion and status read from the store."""

__all__ = [
    "GATEWAY_NAME_LABEL",
    "READS",
    "Converted",
    "certificate_granted",
    "convert",
    "is_synthetic",
    "selects",
    "statuses",
]

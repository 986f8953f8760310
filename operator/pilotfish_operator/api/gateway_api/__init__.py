"""The Kubernetes Gateway API (gateway.networking.k8s.io), standard channel fields.

Kinds whose names other groups also use get a Pilotfish-internal kind name
(`Resource.STORE_KIND`): the Gateway is `KubernetesGateway`. The HTTPRoute model is
`KubernetesHTTPRoute` in Python only (Istio's VirtualService has an `HTTPRoute`
message); its kind is HTTPRoute everywhere.
"""

from __future__ import annotations

from .common import (
    GROUP,
    BackendObjectReference,
    GatewayApiModel,
    GatewayApiResource,
    LabelSelector,
    ParentReference,
)
from .gateway import *  # noqa: F403
from .gateway import __all__ as _gateway_all
from .routes import *  # noqa: F403
from .routes import __all__ as _routes_all

__all__ = [
    "GROUP",
    "BackendObjectReference",
    "GatewayApiModel",
    "GatewayApiResource",
    "LabelSelector",
    "ParentReference",
    *_gateway_all,
    *_routes_all,
]

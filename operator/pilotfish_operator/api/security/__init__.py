"""Istio's security.istio.io API, one module per kind."""

from __future__ import annotations

from .authorization_policy import (
    AuthorizationPolicy,
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Rule,
    Source,
)
from .peer_authentication import (
    SECURITY_VERSIONS,
    PeerAuthentication,
    PeerAuthenticationSpec,
    PeerMtls,
)
from .request_authentication import (
    JWTRule,
    RequestAuthentication,
    RequestAuthenticationSpec,
)

__all__ = [
    "SECURITY_VERSIONS",
    "AuthorizationPolicy",
    "AuthorizationPolicySpec",
    "Condition",
    "JWTRule",
    "Operation",
    "PeerAuthentication",
    "PeerAuthenticationSpec",
    "PeerMtls",
    "RequestAuthentication",
    "RequestAuthenticationSpec",
    "Rule",
    "Source",
]

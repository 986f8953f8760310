"""Istio's security.istio.io API, one module per kind."""

from __future__ import annotations

from .peer_authentication import (
    SECURITY_VERSIONS,
    PeerAuthentication,
    PeerAuthenticationSpec,
    PeerMtls,
)

__all__ = ["SECURITY_VERSIONS", "PeerAuthentication", "PeerAuthenticationSpec", "PeerMtls"]

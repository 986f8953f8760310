"""Local mode's pod tokens: what a projected ServiceAccount token is in a cluster.

`pilotfish local` gives each sidecar a token naming its pod and service account,
signed with a key that exists only in the process (HMAC-SHA256); the xDS server
serves a stream only the node its token names. Tokens are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass


class TokenError(ValueError):
    """A token that does not verify; the message never contains the token."""


@dataclass(frozen=True)
class TokenClaims:
    namespace: str
    pod: str
    service_account: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LocalTokens:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def __repr__(self) -> str:
        return "LocalTokens(<key hidden>)"

    def issue(self, namespace: str, pod: str, service_account: str) -> str:
        body = json.dumps({"ns": namespace, "pod": pod, "sa": service_account}).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        return f"{_b64(body)}.{_b64(mac)}"

    def verify(self, token: str) -> TokenClaims:
        try:
            body_text, mac_text = token.split(".")
            body, mac = _unb64(body_text), _unb64(mac_text)
        except ValueError:
            raise TokenError("a malformed token") from None
        if not hmac.compare_digest(hmac.new(self._key, body, hashlib.sha256).digest(), mac):
            raise TokenError("a token this control plane did not issue")
        claims = json.loads(body)
        return TokenClaims(claims["ns"], claims["pod"], claims["sa"])

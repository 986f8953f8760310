"""Who a sidecar's ServiceAccount token belongs to, as the API server says (TokenReview).

The injected pod mounts a projected token whose audience is ours, bound to the pod;
the API server answers with the service account (`system:serviceaccount:<ns>:<sa>`)
and the pod's name. A review is cached (by the token's hash, never the token) until
shortly before the token expires, so a reconnecting fleet costs one API call per pod
and token, not per stream.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from ..injection import XDS_TOKEN_AUDIENCE
from ..security.pki import utcnow
from ..security.tokens import TokenClaims, TokenError
from .client import ApiError, KubeClient

log = logging.getLogger(__name__)

# The audience injected pods request their xDS token for: a token minted for the API
# server (or anyone else) is refused, and ours is useless to them.
AUDIENCE = XDS_TOKEN_AUDIENCE
PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
POD_NAME = "authentication.kubernetes.io/pod-name"
_SA_PREFIX = "system:serviceaccount:"
CACHE_AT_MOST = datetime.timedelta(minutes=5)
"""A token is re-reviewed at least this often, so a deleted pod's token stops working."""


class TokenReviewer:
    def __init__(
        self,
        client: KubeClient,
        audience: str = AUDIENCE,
        now: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self.client = client
        self.audience = audience
        self.now = now
        self._cache: dict[str, tuple[datetime.datetime, TokenClaims]] = {}
        self._pruned = now()

    async def review(self, token: str) -> TokenClaims:
        """The pod and service account `token` proves; TokenError saying why not."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self.now()
        cached = self._cache.get(digest)
        if cached is not None and now < cached[0]:
            return cached[1]
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.audience]},
        }
        try:
            answer = await self.client.post(PATH, body)
        except ApiError as exc:
            # The API's message may quote the request: never pass it on.
            log.error("TokenReview failed with HTTP %d", exc.status)
            raise TokenError(f"a token that could not be reviewed (HTTP {exc.status})") from None
        claims = _claims(answer.get("status") or {}, self.audience)
        self._forget_expired(now)
        self._cache[digest] = (min(now + CACHE_AT_MOST, _expiry(token, now)), claims)
        return claims

    def _forget_expired(self, now: datetime.datetime) -> None:
        # A reconnecting fleet misses the cache once per pod: sweep only now and then.
        if now - self._pruned < CACHE_AT_MOST:
            return
        self._pruned = now
        for digest in [d for d, (until, _) in self._cache.items() if until <= now]:
            del self._cache[digest]


def _claims(status: dict[str, Any], audience: str) -> TokenClaims:
    if not status.get("authenticated"):
        raise TokenError(f"a token the API server does not accept: {status.get('error') or ''}")
    if audience not in (status.get("audiences") or [audience]):
        raise TokenError(f"a token not meant for audience {audience!r}")
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if not username.startswith(_SA_PREFIX) or username.count(":") != 3:
        raise TokenError("a token that is not a service account's")
    namespace, account = username.removeprefix(_SA_PREFIX).split(":")
    pods = (user.get("extra") or {}).get(POD_NAME) or []
    if not pods:
        raise TokenError("a service account token not bound to a pod")
    return TokenClaims(namespace, str(pods[0]), account)


def _expiry(token: str, now: datetime.datetime) -> datetime.datetime:
    """The JWT's own `exp` (read only to bound the cache: the API server verified it)."""
    try:
        payload = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
        return datetime.datetime.fromtimestamp(int(exp), datetime.UTC)
    except (IndexError, ValueError, KeyError, TypeError):
        return now

"""Which xDS streams the control plane serves: one rule for local mode and the cluster.

A stream names its node (`<pod>.<namespace>`); its bearer token proves a pod and a
service account (local mode's signed token, or the API server's TokenReview of the
pod's projected token). The stream is served only when the two name the same pod and,
once the pod is known, the pod runs as that service account: the identity whose key
the stream receives. Refusals say why without quoting the token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from ..api import Pod
from ..store import Store
from ..translate import proxy_id
from .tokens import TokenClaims, TokenError

Verify = Callable[[str], Awaitable[TokenClaims]]
"""A bearer token → the pod and service account it proves (TokenError if none)."""


class XdsAccess:
    def __init__(self, verify: Verify, store: Store, *, pod_must_be_known: bool) -> None:
        self.verify = verify
        self.store = store
        self.pod_must_be_known = pod_must_be_known
        """Local mode knows every pod before its sidecar starts; in a cluster the pod's
        watch event can trail its sidecar's first connection by a moment."""

    async def __call__(self, node_id: str, metadata: Mapping[str, str]) -> str | None:
        scheme, _, token = metadata.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return "it presents no token"
        try:
            claims = await self.verify(token)
        except TokenError as exc:
            return f"it presents {exc}"
        if node_id != proxy_id(claims.namespace, claims.pod):
            return f"its token is for pod {claims.namespace}/{claims.pod}"
        pod = self.store.get(("Pod", claims.namespace, claims.pod))
        if pod is None and not self.pod_must_be_known:
            return None
        if not isinstance(pod, Pod) or pod.service_account != claims.service_account:
            return (
                f"its token's service account {claims.service_account!r} is not "
                f"pod {claims.namespace}/{claims.pod}'s"
            )
        return None

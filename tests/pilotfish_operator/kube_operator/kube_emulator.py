"""kmock's Kubernetes emulator with the server-side behaviour kopf and our clients rely on.

kmock 0.8 lacks: namespace paths (`/api/v1/namespaces[/name]` are mis-parsed),
server-side metadata (uid, resourceVersion, generation, generateName, the
namespace from the URL), PUT and TokenReview. Added here, plus test levers: a delay on
listing a resource, forcing watch streams to start over (410 Gone) after
objects were changed behind the watchers' backs, and bearer tokens that can be
revoked (401 as the API server answers).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import uuid
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import k8s as _k8s
from kmock._internal import parsing

_original_parse_path = parsing.parse_path


def _parse_path(path: str) -> Any:
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (
        len(parts) <= 4 or (len(parts) == 5 and parts[4] in ("status", "finalize"))
    ):
        return parsing.ParsedPath(
            group="",
            version="v1",
            plural="namespaces",
            namespace=None,
            name=parts[3] if len(parts) > 3 else None,
            subresource=parts[4] if len(parts) > 4 else None,
        )
    return _original_parse_path(path)


parsing.parse_path = _parse_path  # kmock looks it up as parsing.parse_path on every request


UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    _versions = itertools.count(1)

    def _rv(self) -> str:
        return str(next(self._versions))

    tokens: set[str] | None = None
    """When set, a request bearing a token is served only if it is one of these; others
    get the API server's 401 Status (a revoked or expired token). The tests' own
    requests carry no token: they speak for the cluster's admin."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pod_tokens: dict[str, tuple[str, str, str]] = {}
        """Projected tokens the TokenReview API accepts: token -> (namespace, service
        account, pod), valid for the audience `pilotfish`."""
        self.reviewed: list[str] = []
        """Every token a TokenReview asked about, in order."""

    async def _handle(self, request: Any) -> Any:
        if request.method == kmock.method.POST and request.url.path.endswith("/tokenreviews"):
            return aiohttp.web.json_response(self._review(request.data or {}), status=201)
        if self.tokens is not None:
            header = request.headers.get("Authorization")
            if header is not None and header.removeprefix("Bearer ") not in self.tokens:
                return aiohttp.web.json_response(UNAUTHORIZED, status=401)
        if request.resource is None:
            return await super()._handle(request)
        delays: dict[str, float] = getattr(self, "list_delays", {})  # plural -> seconds
        if request.action == kmock.action.LIST:
            delay = delays.get(request.resource.plural)
            if delay:
                await asyncio.sleep(delay)
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault(
                "creationTimestamp",
                datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            meta["resourceVersion"] = self._rv()
            meta["generation"] = 1
        elif request.action == kmock.action.UPDATE:
            rv = self._rv()
            if isinstance(request.data, dict):  # merge patch
                meta = request.data.setdefault("metadata", {})
                meta["resourceVersion"] = rv
                if request.subresource is None and "spec" in request.data:
                    meta["generation"] = self._generation(request) + 1
            elif isinstance(request.data, list):  # JSON patch: after kopf's "test" op
                request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": rv})
        elif request.method == kmock.method.PUT and request.name:
            return await self._replace(request)
        return await super()._handle(request)

    def _review(self, body: dict[str, Any]) -> dict[str, Any]:
        """As the API server reviews a bound service-account token for an audience."""
        spec = body.get("spec") or {}
        self.reviewed.append(spec.get("token", ""))
        found = self.pod_tokens.get(spec.get("token", ""))
        status: dict[str, Any] = {"authenticated": False, "error": "invalid bearer token"}
        if found is not None and "pilotfish" in (spec.get("audiences") or ["pilotfish"]):
            namespace, account, pod = found
            status = {
                "authenticated": True,
                "audiences": ["pilotfish"],
                "user": {
                    "username": f"system:serviceaccount:{namespace}:{account}",
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                    "extra": {"authentication.kubernetes.io/pod-name": [pod]},
                },
            }
        return {**body, "status": status}

    def _generation(self, request: Any) -> int:
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects:
            return 0
        return int((self._objects[key].raw.get("metadata") or {}).get("generation") or 0)

    async def _replace(self, request: Any) -> Any:
        """PUT: replace the whole object, refusing a stale resourceVersion (409)."""
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            obj = self._objects[key]
            sent = (request.data.get("metadata") or {}).get("resourceVersion")
            if sent and sent != obj.get("metadata", {}).get("resourceVersion"):
                raise _k8s.KubernetesObjectConflictError(
                    reason="Conflict", message="the object has been modified"
                )
            new = dict(request.data)
            new["metadata"] = {
                **obj.get("metadata", {}),
                **(new.get("metadata") or {}),
                "resourceVersion": self._rv(),
            }
            obj.history.append(new)
            raw = obj.raw
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return aiohttp.web.json_response(raw)

    async def delete_unseen(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete an object without telling the watchers (as if they were disconnected)."""
        async with self._lock:
            self.objects[resource, namespace, name].delete()

    async def expire_watches(self, resource: str) -> None:
        """Tell the watchers their resourceVersion is gone: they must list again."""
        error = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
        plural = resource.rsplit("/", 1)[-1]
        for key, bus in list(self._buses.items()):
            if key.plural == plural:
                await bus.put(error)

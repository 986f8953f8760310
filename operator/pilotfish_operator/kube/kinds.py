"""The API resources the operator watches, and how a watched object becomes a Store object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.kinds import SPECS
from ..store import Key, raw_key


@dataclass(frozen=True)
class Watched:
    group: str
    version: str
    plural: str
    kind: str
    """Pilotfish's name for the kind (`Resource.store_kind`): the Store's keys."""
    namespaced: bool = True
    istio: bool = False
    """Ours to report status on (Istio's kinds, also validated; the Gateway API's)."""
    api_kind: str = ""
    """The kind as the API server names it, when that differs from `kind`."""

    @property
    def wire_kind(self) -> str:
        return self.api_kind or self.kind

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str, subresource: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        where = f"/namespaces/{namespace}" if self.namespaced else ""
        return f"{base}{where}/{self.plural}/{name}" + (f"/{subresource}" if subresource else "")


# Every kind we read, from the kind descriptors. Our kinds are watched at their stored
# version only: the API server serves every version of an object, converted, through each.
WATCHED = tuple(
    Watched(
        s.group,
        s.versions[0],
        s.plural,
        s.kind,
        s.namespaced,
        istio=s.owned or s.status != "none",
        api_kind=s.api_kind if s.api_kind != s.kind else "",
    )
    for s in SPECS
    if s.watched
)
BY_KIND = {w.kind: w for w in WATCHED}
BY_PLURAL = {(w.group, w.plural): w for w in WATCHED}

# Fields that change on every write without changing what the mesh is built from;
# keeping them would turn each status write or kopf bookkeeping into a rebuild.
_VOLATILE_METADATA = ("resourceVersion", "managedFields")


def to_store(watched: Watched, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as the Store should see it: typed (list items carry no kind),
    without volatile metadata, and, for our own kinds, without the status we write."""
    out = dict(obj)
    out["apiVersion"] = watched.api_version
    out["kind"] = watched.wire_kind
    meta = out.get("metadata")
    if isinstance(meta, Mapping):
        out["metadata"] = {k: v for k, v in meta.items() if k not in _VOLATILE_METADATA}
    if watched.istio:
        out.pop("status", None)
    return out


def key_of(watched: Watched, obj: Mapping[str, Any]) -> Key:
    return raw_key({**obj, "apiVersion": watched.api_version, "kind": watched.wire_kind})

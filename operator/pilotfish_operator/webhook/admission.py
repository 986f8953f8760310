"""AdmissionReview v1 as the API server sends and expects it, and JSONPatch operations.

Only the fields the webhooks read are modelled; anything else in a review is ignored, so a
newer API server adding fields never breaks admission.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

API_VERSION = "admission.k8s.io/v1"


class BadReview(ValueError):
    """The body is not an AdmissionReview v1 request (answered with HTTP 400)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class GroupVersionKind(_Model):
    group: str = ""
    version: str = ""
    kind: str = ""


class AdmissionRequest(_Model):
    uid: str
    kind: GroupVersionKind = Field(default_factory=GroupVersionKind)
    namespace: str = ""
    name: str = ""
    operation: str = ""
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(default=None, alias="oldObject")
    dry_run: bool = Field(default=False, alias="dryRun")


class _Review(_Model):
    api_version: str = Field(alias="apiVersion")
    kind: str
    request: AdmissionRequest


def parse_review(body: bytes) -> AdmissionRequest:
    try:
        review = _Review.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise BadReview(f"not an AdmissionReview: {first['msg']}") from None
    if review.api_version != API_VERSION or review.kind != "AdmissionReview":
        raise BadReview(f"expected {API_VERSION} AdmissionReview, got {review.api_version}")
    return review.request


@dataclass(frozen=True)
class Response:
    allowed: bool = True
    message: str = ""
    """Shown to the user (kubectl prints it) when the request is denied."""
    code: int = 200
    patch: list[dict[str, Any]] = field(default_factory=list)
    warnings: tuple[str, ...] = ()

    @staticmethod
    def deny(message: str, code: int = 400) -> Response:
        return Response(allowed=False, message=message, code=code)


def review(uid: str, response: Response) -> dict[str, Any]:
    """The AdmissionReview body answering request `uid`."""
    out: dict[str, Any] = {"uid": uid, "allowed": response.allowed}
    if not response.allowed:
        out["status"] = {"code": response.code, "message": response.message}
    if response.patch:
        out["patchType"] = "JSONPatch"
        out["patch"] = base64.b64encode(json.dumps(response.patch).encode()).decode()
    if response.warnings:
        out["warnings"] = list(response.warnings)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": out}


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer; `~` and `/` in keys (annotation names) are escaped."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def add(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": value}


def replace(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def prepend(
    obj: Mapping[str, Any], path: tuple[str, ...], items: list[Any]
) -> list[dict[str, Any]]:
    """Ops putting `items` first in the list at `path` (created when absent), in order."""
    if not items:
        return []
    if _get(obj, path) is None:
        return [add(pointer(*path), items)]
    return [add(pointer(*path, i), item) for i, item in enumerate(items)]


def append(obj: Mapping[str, Any], path: tuple[str, ...], items: list[Any]) -> list[dict[str, Any]]:
    if not items:
        return []
    if _get(obj, path) is None:
        return [add(pointer(*path), items)]
    return [add(pointer(*path, "-"), item) for item in items]


def set_keys(
    obj: Mapping[str, Any], path: tuple[str, ...], values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Ops setting keys of the map at `path` (created when absent); `add` replaces a key."""
    if not values:
        return []
    if _get(obj, path) is None:
        return [add(pointer(*path), dict(values))]
    return [add(pointer(*path, k), v) for k, v in values.items()]


def _get(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur

"""Typed, validated API objects: Istio's networking kinds and the Kubernetes kinds the mesh reads.

``parse(obj)`` turns one decoded YAML/JSON object into a model or raises ``ConfigError`` naming
the object, the field path and the reason. No Kubernetes client imports: local mode uses this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from . import mesh_config
from .errors import ConfigError, Problem, format_path, problems_from
from .kinds import BY_KIND, SPECS, UNSUPPORTED, KindSpec, spec_for
from .kube import (
    ConfigMap,
    Container,
    ContainerPort,
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    Namespace,
    Node,
    ObjectReference,
    Pod,
    PodCondition,
    PodSpec,
    PodStatus,
    Secret,
    Service,
    ServiceAccount,
    ServicePort,
    ServiceSpec,
)
from .meta import Duration, IstioModel, IstioResource, KubeObject, ObjectMeta, Resource
from .networking import *  # noqa: F403 - the Istio message classes are the public surface
from .networking import NETWORKING_VERSIONS
from .networking import __all__ as _networking_all
from .security import *  # noqa: F403 - likewise for security.istio.io
from .security import __all__ as _security_all
from .telemetry import Telemetry, TelemetrySpec

# Pilotfish's kind name (`Resource.store_kind`) -> model, from the kind descriptors.
# parse() finds the model by apiVersion group and kind, then checks the version.
KINDS: dict[str, type[Resource]] = {spec.kind: spec.model for spec in SPECS}


def model_for(api_version: object, kind: object) -> type[Resource] | None:
    spec = spec_for(api_version, kind)
    return spec.model if spec is not None else None


def _identity(obj: Mapping[str, Any], cls: type[Resource] | None) -> tuple[str, str, str]:
    kind = obj.get("kind")
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name, namespace = meta.get("name"), meta.get("namespace")
    ns = "" if cls is not None and cls.CLUSTER_SCOPED else namespace or "default"
    return (
        kind if isinstance(kind, str) and kind else "object",
        ns if isinstance(ns, str) else str(ns),
        name if isinstance(name, str) else "<unnamed>",
    )


_ADAPTERS: dict[type[Resource], TypeAdapter[Resource]] = {}


def _adapter(cls: type[Resource]) -> TypeAdapter[Resource]:
    # Kubernetes kinds are pydantic dataclasses, Istio kinds models: one way for both.
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def dump(resource: Resource) -> dict[str, Any]:
    """The object as the user would write it (aliases, no defaults)."""
    out: dict[str, Any] = _adapter(type(resource)).dump_python(
        resource, mode="json", by_alias=True, exclude_none=True, exclude_defaults=True
    )
    return out


def _without_nulls(value: Any) -> Any:
    """Kubernetes serialises an unset list, map or struct pointer without `omitempty` as
    null (an EndpointSlice with no endpoints arrives as `endpoints: null`): null means
    "unset", so every null member is dropped and the field takes its default."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def parse(obj: Mapping[str, Any]) -> Resource:
    """Validate one object; raises ConfigError (never pydantic's ValidationError)."""
    if not isinstance(obj, Mapping):
        raise ConfigError("object", "", "<unnamed>", [Problem("", "must be a mapping")])
    cls = model_for(obj.get("apiVersion"), obj.get("kind"))
    kind, namespace, name = _identity(obj, cls)
    same_name = [s for s in SPECS if s.api_kind == kind]
    if cls is None and len(same_name) > 1:
        versions = ", ".join(v for s in same_name for v in s.model.API_VERSIONS)
        reason = f"{kind} is in several API groups; must be one of {versions}"
        raise ConfigError(kind, namespace, name, [Problem("apiVersion", reason)])
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    if cls is None and kind in UNSUPPORTED.get(group, ()):
        reason = f"{group}/{kind} is recognised but not supported yet by Pilotfish"
        raise ConfigError(kind, namespace, name, [Problem("kind", reason)])
    if cls is None:
        known = ", ".join(dict.fromkeys(s.api_kind for s in SPECS))
        reason = f"unknown kind {obj.get('kind')!r}; expected one of {known}"
        raise ConfigError(kind, namespace, name, [Problem("kind", reason)])
    if issubclass(cls, KubeObject):
        obj = _without_nulls(obj)
    try:
        resource: Resource = _adapter(cls).validate_python(obj)
    except ValidationError as exc:
        raise ConfigError(kind, namespace, name, problems_from(exc)) from None
    if isinstance(resource, ConfigMap) and resource.key == mesh_config.STORE_KEY:
        mesh_config.parse_mesh(namespace, name, resource.data)  # refused here, whole
    return resource


__all__ = [
    "BY_KIND",
    "ConfigMap",
    "Secret",
    "KINDS",
    "SPECS",
    "KindSpec",
    "model_for",
    "NETWORKING_VERSIONS",
    "ConfigError",
    "Container",
    "ContainerPort",
    "Duration",
    "dump",
    "Endpoint",
    "EndpointConditions",
    "EndpointPort",
    "EndpointSlice",
    "IstioModel",
    "IstioResource",
    "KubeObject",
    "Namespace",
    "Node",
    "ObjectMeta",
    "ObjectReference",
    "Pod",
    "PodCondition",
    "PodSpec",
    "PodStatus",
    "Problem",
    "Resource",
    "Service",
    "ServiceAccount",
    "ServicePort",
    "ServiceSpec",
    "Telemetry",
    "TelemetrySpec",
    "format_path",
    "parse",
    *_networking_all,
    *_security_all,
]

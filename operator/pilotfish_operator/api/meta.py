"""Shared pieces of the API models: base classes, scalar types, ObjectMeta, Go-style durations."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    StrictBool,
    StrictFloat,
    StrictStr,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

# Strict scalars: Kubernetes rejects "5" for an integer field, so we do too (pydantic's lax
# mode would quietly coerce it). Lists stay lax so YAML lists become tuples.
Str = StrictStr
Bool = StrictBool
Double = StrictFloat
Int32 = Annotated[int, Strict(), Ge(-(2**31)), Le(2**31 - 1)]
UInt32 = Annotated[int, Strict(), Ge(0), Le(2**32 - 1)]
UInt64 = Annotated[int, Strict(), Ge(0), Le(2**64 - 1)]
Port = Annotated[int, Strict(), Ge(1), Le(65535)]
Percentage = Annotated[float, Strict(), Ge(0), Le(100)]
StrMap = dict[StrictStr, StrictStr]

_UNITS_US = {
    "ns": 0.001,
    "us": 1.0,
    "µs": 1.0,
    "μs": 1.0,
    "ms": 1e3,
    "s": 1e6,
    "m": 6e7,
    "h": 3.6e9,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: object) -> timedelta:
    """Parse Go's time.ParseDuration syntax ("1h2m3.5s", "100ms"); Istio documents durations so."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a duration string such as 10s or 100ms")
    text = value.strip()
    if text == "0":
        return timedelta(0)
    if text.startswith("-"):
        raise ValueError("must not be negative")
    text = text.removeprefix("+")
    pos, total_us = 0, 0.0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            break
        total_us += float(m.group(1)) * _UNITS_US[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError("must be a duration such as 1h2m3.5s, 10s or 100ms")
    return timedelta(microseconds=round(total_us))


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, so a dumped model reads back the same."""
    us = value // timedelta(microseconds=1)
    if us == 0:
        return "0s"
    if us < 1_000_000:
        return f"{us // 1000}ms" if us % 1000 == 0 else f"{us}us"
    hours, rest = divmod(us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, micros = divmod(rest, 1_000_000)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    frac = f".{micros:06d}".rstrip("0") if micros else ""
    return out + (f"{seconds}{frac}s" if seconds or frac else "")


def _at_least_1ms(value: timedelta) -> timedelta:
    # Envoy rounds to milliseconds; a smaller non-zero value would silently become 0 (= off).
    if value < timedelta(milliseconds=1):
        raise ValueError("must be >= 1ms")
    return value


_DURATION_META = (
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string"}),
)
# A non-negative duration (timeouts: 0s means "no timeout").
Duration = Annotated[timedelta, BeforeValidator(parse_duration), *_DURATION_META]
# A duration Istio requires to be at least 1ms.
PositiveDuration = Annotated[
    timedelta,
    BeforeValidator(lambda v: _at_least_1ms(parse_duration(v))),
    *_DURATION_META,
]


class IstioModel(BaseModel):
    """Istio messages: camelCase on the wire, immutable, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


# Kubernetes objects are the bulk of what a control plane holds (a pod per replica,
# an EndpointSlice per service...). They are slotted pydantic dataclasses: validated
# like models, about a sixth of a BaseModel's memory (no per-instance __dict__ or
# fields-set).
_KUBE_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
kube_object = dataclass(frozen=True, slots=True, config=_KUBE_CONFIG)
"""Decorator for Kubernetes objects and their parts: unknown fields are ignored (real
objects carry far more than we read); the fields we read are type-checked."""


@kube_object
class OwnerReference:
    kind: Str
    name: Str
    controller: Bool = False


@kube_object
class ObjectMeta:
    name: Str
    namespace: Str | None = None
    labels: StrMap = Field(default_factory=dict)
    annotations: StrMap = Field(default_factory=dict)
    uid: Str | None = None
    generation: int | None = None
    resource_version: Str | None = None
    # Lax on purpose: YAML loaders turn RFC 3339 timestamps into datetime objects.
    creation_timestamp: datetime | None = None
    owner_references: tuple[OwnerReference, ...] = ()


class Resource:
    """What every top-level object parse() returns has: identity and a key."""

    __slots__ = ()
    API_VERSIONS: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = ""
    STORE_KIND: ClassVar[str] = ""
    """The kind's name inside Pilotfish (store keys, kind lookups, status) when another
    API group has a kind of the same name: the Gateway API's Gateway is
    `KubernetesGateway` (Istio's internal name for it). Empty: KIND."""
    CLUSTER_SCOPED: ClassVar[bool] = False
    metadata: ObjectMeta

    @classmethod
    def store_kind(cls) -> str:
        return cls.STORE_KIND or cls.KIND

    @property
    def namespace(self) -> str:
        if self.CLUSTER_SCOPED:
            return ""
        return self.metadata.namespace or "default"

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.store_kind(), self.namespace, self.metadata.name)

    # Inherited by both the dataclass and the model bases below: pydantic collects
    # validators from every class in the MRO.
    @field_validator("api_version")
    @classmethod
    def _known_api_version(cls, value: str) -> str:
        if value not in cls.API_VERSIONS:
            raise ValueError(f"must be one of {', '.join(cls.API_VERSIONS)}")
        return value

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value != cls.KIND:
            raise ValueError(f"must be {cls.KIND}")
        return value


@kube_object
class KubeObject(Resource):
    """Base of the Kubernetes kinds."""

    api_version: Str
    kind: Str
    metadata: ObjectMeta


class IstioResource(BaseModel, Resource):
    """Istio kinds: strict about unknown fields, status is the controller's and ignored here."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )

    api_version: Str
    kind: Str
    metadata: ObjectMeta

    status: dict[str, Any] | None = None

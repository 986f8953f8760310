"""Protobuf wire encoding of envoy-data-plane messages, fast.

betterproto2's `bytes(message)` re-reads its field metadata, builds every field's
default value under `warnings.catch_warnings()` and goes through a BytesIO per
varint, for every field of every message: most of the cost of a large push. This
module compiles, once per message class, a plan from the same metadata (field
numbers, types, defaults, wrapper types) and encodes with it. The output is the
same bytes, field for field and in the same order (tests compare the two on
every golden resource and on messages exercising each field kind).
"""

from __future__ import annotations

import functools
import struct
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import betterproto2 as bp

Encoder = Callable[[Any], bytes]
Plan = tuple[tuple[str, Any, Encoder], ...]

_PLANS: dict[type, Plan] = {}
_VARINT_TYPES = frozenset(
    {bp.TYPE_ENUM, bp.TYPE_BOOL, bp.TYPE_INT32, bp.TYPE_INT64, bp.TYPE_UINT32, bp.TYPE_UINT64}
)
_ZIGZAG_TYPES = frozenset({bp.TYPE_SINT32, bp.TYPE_SINT64})
_FIXED = {
    bp.TYPE_DOUBLE: ("<d", 1),
    bp.TYPE_FLOAT: ("<f", 5),
    bp.TYPE_FIXED32: ("<I", 5),
    bp.TYPE_FIXED64: ("<Q", 1),
    bp.TYPE_SFIXED32: ("<i", 5),
    bp.TYPE_SFIXED64: ("<q", 1),
}


def varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # negative int32/int64: ten bytes, as protobuf does
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    """A length-delimited field, written even when empty (a present empty message)."""
    return tag(number, 2) + varint(len(payload)) + payload


def field_number(cls: type, name: str) -> int:
    """The protobuf field number of `cls.name` (for code that writes at the wire level)."""
    number: int = cls._betterproto.meta_by_field_name[name].number  # type: ignore[attr-defined]
    return number


_M = TypeVar("_M")
_SHARED: dict[int, tuple[Any, bytes]] = {}
"""id -> (message, its bytes) for messages built once and reused (see `shared`)."""
_SHARED_MAX = 1 << 16


def shared(message: _M) -> _M:
    """Mark a message that is built once and reused across resources (never mutated):
    its bytes are computed once, and every resource embedding it reuses them. The
    message is kept alive here, so its id cannot be reused by another object."""
    if len(_SHARED) >= _SHARED_MAX:
        _SHARED.clear()  # bounded: distinct shared parts are few; this is a backstop
    _SHARED[id(message)] = (message, encode(message))
    return message


class Encoded:
    """A message already encoded, set as a message field's value: `encode` writes its
    bytes in the field's place (for parts written at the wire level because building
    them as messages, in bulk, is too slow). Only this module's `encode` knows it."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body


def attach(message: Any, field: str, body: bytes) -> None:
    """Set `message.field` to the message whose encoding is `body`."""
    setattr(message, field, Encoded(body))


def built_once(maxsize: int) -> Callable[[Callable[..., _M]], Callable[..., _M]]:
    """`functools.lru_cache` for builders of messages that are reused and never mutated,
    whose bytes are then computed once too (`shared`)."""

    def decorate(build: Callable[..., _M]) -> Callable[..., _M]:
        @functools.lru_cache(maxsize=maxsize)
        def cached(*args: Any) -> _M:
            return shared(build(*args))

        return functools.wraps(build)(cached)

    return decorate


def encode(message: Any) -> bytes:
    """`bytes(message)`, the same bytes, several times faster."""
    if type(message) is Encoded:
        return message.body
    known = _SHARED.get(id(message))
    if known is not None and known[0] is message:
        return known[1]
    cls = type(message)
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _compile(cls)
    parts = []
    values = message.__dict__
    for name, default, write in plan:
        value = values[name]
        if value is None or value == default:
            continue
        parts.append(write(value))
    parts.append(message._unknown_fields)
    return b"".join(parts)


def _payload(proto_type: str, unwrap: Callable[[], type] | None) -> Encoder:
    """How one value of this type becomes the bytes after its tag (and length)."""
    if proto_type in _VARINT_TYPES:
        return lambda v: varint(int(v))
    if proto_type in _ZIGZAG_TYPES:
        return lambda v: varint(v << 1 if v >= 0 else (v << 1) ^ ~0)
    if proto_type in _FIXED:
        packer = struct.Struct(_FIXED[proto_type][0]).pack
        return lambda v: packer(v)
    if proto_type == bp.TYPE_STRING:
        return lambda v: v.encode()
    if proto_type == bp.TYPE_BYTES:
        return lambda v: bytes(v)
    if proto_type == bp.TYPE_MESSAGE:
        if unwrap is not None:
            wrapper = unwrap
            return lambda v: encode(wrapper().from_wrapped(v))  # type: ignore[attr-defined]
        return encode
    raise NotImplementedError(proto_type)


def _wire_type(proto_type: str) -> int:
    if proto_type in _VARINT_TYPES or proto_type in _ZIGZAG_TYPES:
        return 0
    if proto_type in _FIXED:
        return _FIXED[proto_type][1]
    return 2


def _single(number: int, proto_type: str, unwrap: Callable[[], type] | None) -> Encoder:
    payload = _payload(proto_type, unwrap)
    wire = _wire_type(proto_type)
    head = tag(number, wire)
    if wire == 2:
        return lambda v: _with_length(head, payload(v))
    return lambda v: head + payload(v)


def _with_length(head: bytes, body: bytes) -> bytes:
    return head + varint(len(body)) + body


def _field(meta: Any) -> Encoder:
    if meta.map_meta is not None:
        key_meta, value_meta = meta.map_meta
        key = _single(1, key_meta.proto_type, None)
        val = _single(2, value_meta.proto_type, value_meta.unwrap)
        head = tag(meta.number, 2)
        return lambda m: b"".join(_with_length(head, key(k) + val(v)) for k, v in m.items())
    if meta.repeated:
        if meta.proto_type in bp.PACKED_TYPES:
            item = _payload(meta.proto_type, None)
            head = tag(meta.number, 2)
            return lambda items: _with_length(head, b"".join(item(i) for i in items))
        one = _single(meta.number, meta.proto_type, meta.unwrap)
        return lambda items: b"".join(one(i) for i in items)
    return _single(meta.number, meta.proto_type, meta.unwrap)


def _compile(cls: type) -> Plan:
    info = cls._betterproto  # type: ignore[attr-defined]
    plan = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated fields' defaults
        for name, meta in info.meta_by_field_name.items():
            plan.append((name, info.default_gen[name](), _field(meta)))
    return tuple(plan)

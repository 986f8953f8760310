"""Encoding Envoy resources once, and the wire bytes of discovery responses.

betterproto2 0.9.1 re-runs pydantic validation on every nested message in
`bytes()`, `parse()` and `to_dict()`; that is ~90 % of encode time (facts.md).
Messages are validated when constructed, so the re-validation is switched off
here. It also rebuilds a field's default value, inside `warnings.catch_warnings()`,
each time it compares a field with it (every construction checks the deprecated
fields that way); the defaults are computed once per class instead. Both changes
are made in one place, for the exact version they were measured on, and
`wire.encode` replaces `bytes()` for speed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import betterproto2

from . import wire
from .types import message_class

TESTED_BETTERPROTO2 = "0.9.1"
_T = TypeVar("_T")
_MISSING = object()


def _skip_validation(self: Any) -> None:
    """Stands in for `Message._validate`: construction already validated."""


_DEFAULTS: dict[type, dict[str, Any]] = {}


def _cached_default(self: Any, field_name: str) -> Any:
    """Stands in for `Message._get_field_default`, whose callers only compare with it."""
    cls = type(self)
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            gen = cls._betterproto.default_gen
            defaults = _DEFAULTS[cls] = {name: make() for name, make in gen.items()}
    return defaults[field_name]


def disable_revalidation() -> None:
    """Switch off per-call re-validation and per-call defaults; idempotent; refuses
    untested versions."""
    version = importlib.metadata.version("betterproto2")
    if version != TESTED_BETTERPROTO2:
        raise RuntimeError(
            f"pilotfish_xds.codec patches betterproto2 internals and was tested with "
            f"betterproto2=={TESTED_BETTERPROTO2}, found {version}; pin it or re-check "
            f"Message._validate before changing the pin"
        )
    betterproto2.Message._validate = _skip_validation  # type: ignore[method-assign]
    betterproto2.Message._get_field_default = _cached_default  # type: ignore[method-assign]


disable_revalidation()


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Encoded:
    """One resource, serialized once and shared by every snapshot that holds it."""

    name: str
    body: bytes
    hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", _digest(self.body))


def encode(name: str, message: betterproto2.Message) -> Encoded:
    return Encoded(name, wire.encode(message))


def decode(type_url: str, body: bytes) -> Any:
    """Parse a resource back into its envoy-data-plane class (debugging, tests)."""
    return message_class(type_url).parse(body)


class EncodeCache:
    """Encoded resources keyed by the builder and the (frozen, hashable) IR it was
    built from: `build(name, fn, *args)` is cached under `(name, fn, args)`, so a
    builder cannot read an input its key leaves out. `sweep()` after each full
    translation drops what that translation did not use.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, Callable[..., Any], tuple[Hashable, ...]], Encoded] = {}
        self._used: set[tuple[str, Callable[..., Any], tuple[Hashable, ...]]] = set()
        self._shared: dict[tuple[Callable[..., Any], tuple[Hashable, ...]], Any] = {}
        self._shared_used: set[tuple[Callable[..., Any], tuple[Hashable, ...]]] = set()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def build(
        self, name: str, fn: Callable[..., betterproto2.Message | bytes], *args: Hashable
    ) -> Encoded:
        """The resource `name` as `fn(*args)` builds it: a message, or bytes where the
        translator writes the wire format itself. Every argument must be hashable
        and determine the result (IR values, names, flags)."""
        key = (name, fn, args)
        self._used.add(key)
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        message = fn(*args)
        body = message if isinstance(message, bytes) else wire.encode(message)
        built = self._entries[key] = Encoded(name, body)
        return built

    def shared(self, fn: Callable[..., _T], *args: Hashable) -> _T:
        """`fn(self, *args)`, built once for equal `args` and kept while used: what
        many proxies see alike (the outbound part of every proxy with the same view)
        is built for the first of them and shared by the rest. Swept like `build`."""
        key = (fn, args)
        self._shared_used.add(key)
        found = self._shared.get(key, _MISSING)
        if found is _MISSING:
            found = self._shared[key] = fn(self, *args)
        return found  # type: ignore[no-any-return]

    def sweep(self) -> int:
        """Drop entries not used since the previous sweep; return how many."""
        stale = self._entries.keys() - self._used
        for key in stale:
            del self._entries[key]
        self._used = set()
        for gone in self._shared.keys() - self._shared_used:
            del self._shared[gone]
        self._shared_used = set()
        return len(stale)


# --- Discovery responses, written at the wire level --------------------------
# Wrapping thousands of pre-encoded bodies in pydantic `Any` objects per push
# would redo, per proxy, the work the cache saved. The layouts below follow
# envoy/service/discovery/v3/discovery.proto; tests parse them back with
# envoy-data-plane to keep them honest.


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field; proto3 leaves empty ones out."""
    return wire.length_delimited(number, payload) if payload else b""


def _any(type_url: bytes, body: bytes) -> bytes:
    return _field(1, type_url) + _field(2, body)


def sotw_response(type_url: str, version: str, nonce: str, resources: Iterable[Encoded]) -> bytes:
    """DiscoveryResponse: version_info=1, resources=2 (Any), type_url=4, nonce=5."""
    url = type_url.encode()
    parts = [_field(1, version.encode())]
    # An Any with an empty body still has to appear, hence the explicit header.
    parts.extend(wire.length_delimited(2, a) for a in (_any(url, r.body) for r in resources))
    parts += [_field(4, url), _field(5, nonce.encode())]
    return b"".join(parts)


def delta_response(
    type_url: str,
    system_version: str,
    nonce: str,
    resources: Iterable[Encoded],
    removed: Iterable[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
    unresolved: Iterable[str] = (),
) -> bytes:
    """DeltaDiscoveryResponse: system_version_info=1, resources=2, type_url=4,
    nonce=5, removed_resources=6; Resource: version=1, resource=2, name=3, aliases=4.
    `aliases`: resource name → the names a proxy asked for it by (VHDS);
    `unresolved`: aliases answered with an empty resource (nothing serves them)."""
    url = type_url.encode()
    aliases = aliases or {}
    parts = [_field(1, system_version.encode())]
    for r in resources:
        item = (
            _field(1, r.hash.encode()) + _field(2, _any(url, r.body)) + _field(3, r.name.encode())
        )
        item += b"".join(_field(4, a.encode()) for a in aliases.get(r.name, ()))
        parts.append(wire.length_delimited(2, item))
    for alias in unresolved:
        name = alias.encode()
        parts.append(wire.length_delimited(2, _field(3, name) + _field(4, name)))
    parts += [_field(4, url), _field(5, nonce.encode())]
    parts.extend(wire.length_delimited(6, n.encode()) for n in removed)
    return b"".join(parts)

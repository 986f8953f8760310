"""Routes of a VirtualService that can never be taken (Istio's analyzer calls them
unreachable rules): a route after one that takes every request, or one whose every
match repeats an earlier route's. Envoy would accept them and silently never use
them; we say so, naming the route."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..api import VirtualService

_EVERYTHING: tuple[dict[str, Any], ...] = ({}, {"uri": {"prefix": "/"}})
"""Matches that take every request (at every gateway and port)."""


def _key(match: Any) -> dict[str, Any]:
    out: dict[str, Any] = match.model_dump(
        exclude_none=True, exclude_defaults=True, exclude={"name", "stat_prefix"}
    )
    return out


def unreachable(vs: VirtualService) -> list[str]:
    """One warning per route of `vs` that no request can reach."""
    where = f"VirtualService {vs.namespace}/{vs.name}"
    out = []
    kinds: tuple[tuple[str, Sequence[Any]], ...] = (
        ("http", vs.spec.http),
        ("tcp", vs.spec.tcp),
        ("tls", vs.spec.tls),
    )
    for kind, rules in kinds:
        seen: list[dict[str, Any]] = []
        taken_by: int | None = None
        for i, rule in enumerate(rules):
            keys = [_key(m) for m in rule.match]
            if taken_by is not None:
                out.append(
                    f"{where}: spec.{kind}[{i}] is never used: spec.{kind}[{taken_by}] "
                    "takes every request before it"
                )
                continue
            if keys and all(k in seen for k in keys):
                out.append(
                    f"{where}: spec.{kind}[{i}] is never used: each of its matches repeats "
                    "an earlier route's"
                )
            seen += keys
            # TLS routes always match on SNI: none of them takes everything.
            if kind != "tls" and (not keys or any(k in _EVERYTHING for k in keys)):
                taken_by = i
    return out

"""Istio's retry semantics: `HTTPRetry` (or its absence) → `ir.Retry` (or None = off).

A route without `retries` gets the mesh default Istio applies: 2 retries on
connect-failure, refused-stream, unavailable, cancelled and 503, each on another host
if one is left. `attempts: 0` turns retries off. With consistent hashing the default
does not move a retry to another host, which would break stickiness (as Istio).
"""

from __future__ import annotations

from datetime import timedelta

from pilotfish_xds import ir

from ..api import HTTPRetry

DEFAULT_ATTEMPTS = 2
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled")
RETRIABLE_STATUS_CODES = "retriable-status-codes"
DEFAULT = ir.Retry(
    attempts=DEFAULT_ATTEMPTS,
    retry_on=(*DEFAULT_RETRY_ON, RETRIABLE_STATUS_CODES),
    status_codes=(503,),
)


def parse_retry_on(value: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """`retryOn` as Istio reads it: Envoy conditions, and bare status codes that make
    `retriable-status-codes` implicit."""
    conditions: list[str] = []
    codes: list[int] = []
    for token in (t.strip() for t in value.split(",")):
        if not token:
            continue
        if token.isdigit():
            codes.append(int(token))
        elif token not in conditions:
            conditions.append(token)
    if codes and RETRIABLE_STATUS_CODES not in conditions:
        conditions.append(RETRIABLE_STATUS_CODES)
    return tuple(conditions), tuple(codes)


DEFAULT_HASHED = ir.Retry(
    DEFAULT.attempts, DEFAULT.retry_on, DEFAULT.status_codes, other_hosts=False
)


def retry(spec: HTTPRetry | None, hashed: bool = False) -> ir.Retry | None:
    if spec is None:
        return DEFAULT_HASHED if hashed else DEFAULT
    if spec.attempts <= 0:
        return None
    retry_on, codes = DEFAULT.retry_on, DEFAULT.status_codes
    if spec.retry_on:
        retry_on, codes = parse_retry_on(spec.retry_on)
    other_hosts = not hashed
    if spec.retry_ignore_previous_hosts is not None:
        other_hosts = spec.retry_ignore_previous_hosts
    per_try = spec.per_try_timeout
    return ir.Retry(
        attempts=spec.attempts,
        retry_on=retry_on,
        status_codes=codes,
        per_try_timeout=per_try if per_try and per_try > timedelta(0) else None,
        other_hosts=other_hosts,
        other_localities=bool(spec.retry_remote_localities),
        backoff=spec.backoff,
    )

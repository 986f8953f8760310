"""When to answer a discovery request: pure decisions, no I/O (Istio's rules).

A request is one of: a new subscription, a stale echo of an old response, a
NACK, or an ACK (possibly changing the subscribed names). Only new
subscriptions and name changes get an answer: answering ACKs re-sends config,
and answering NACKs re-sends rejected config in a loop.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass


class Kind(enum.Enum):
    NEW = "new"  # first request for this type on this stream (or after a restart)
    STALE = "stale"  # refers to a response that has since been superseded
    NACK = "nack"
    ACK = "ack"


@dataclass(frozen=True, slots=True)
class Decision:
    kind: Kind
    respond: bool
    version: str = ""  # ACK: version accepted; NACK: version rejected


def decide_sotw(
    *,
    last_nonce: str | None,
    last_names: frozenset[str] | None,
    nonce: str,
    names: frozenset[str],
    error: bool,
    sent_version: str = "",
    acked_version: str = "",
) -> Decision:
    """`last_*` describe what this stream last sent for the type (None: nothing).

    `acked_version` is the request's version_info: on an ACK, the version applied.
    """
    if not nonce or last_nonce is None:
        # A known nonce with no state means Envoy was talking to a previous
        # server process: treat it as a new subscription too.
        return Decision(Kind.NEW, True)
    if nonce != last_nonce:
        return Decision(Kind.STALE, False)
    if error:
        return Decision(Kind.NACK, False, sent_version)
    return Decision(Kind.ACK, names != last_names, acked_version)


def decide_delta(
    *,
    known: bool,
    nonce_versions: Mapping[str, str],
    nonce: str,
    subscribe: Collection[str],
    unsubscribe: Collection[str],
    error: bool,
) -> Decision:
    """Delta requests carry no version: `nonce_versions` maps each nonce this
    stream sent (and not yet superseded) to the version it carried.

    Subscription changes are cumulative in Delta, so they are answered whatever
    the nonce says; only the ACK/NACK bookkeeping depends on it.
    """
    if not known:
        return Decision(Kind.NEW, True)
    changed = bool(subscribe or unsubscribe)
    if not nonce:
        return Decision(Kind.NEW if changed else Kind.STALE, changed)
    version = nonce_versions.get(nonce)
    if version is None:
        return Decision(Kind.STALE, changed)
    if error:
        return Decision(Kind.NACK, changed, version)
    return Decision(Kind.ACK, changed, version)

"""When to answer a discovery request: pure decisions, no I/O (Istio's rules).

A request is one of: a new subscription, a stale echo of an old response, a
NACK, or an ACK (possibly changing the subscribed names). Only new
subscriptions and name changes get an answer: answering ACKs re-sends config,
and answering NACKs re-sends rejected config in a loop.

A new subscription may come from a proxy that reconnected (to this server after a
restart, or to another replica behind the same Service) and still holds its config.
Versions are content hashes, the same on every replica built from the same objects,
so the proxy says what it holds: in State of the World the request's version_info
(with no nonce of ours), in Delta its initial_resource_versions. When that is what
we would send, nothing is sent (as go-control-plane answers only a differing
version); the stream records it as sent and acknowledged, so the ordering below
(`SEND_AFTER`: a held back listener may go once the clusters are known current) and
later pushes work as after an ACK. Otherwise only what differs is sent (Delta), or
the type (State of the World).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .types import CLUSTER, LISTENER, ROUTE, VIRTUAL_HOST


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


# --- Ordering and retries ----------------------------------------------------------
#
# Envoy checks some references when a resource arrives (a listener's inline routes
# against the clusters it has applied) and silently drops traffic for others (a route
# to a cluster still warming answers 503). So a type that names clusters is sent only
# once the proxy has answered every cluster response we sent it: in State of the World
# Envoy acknowledges clusters only when they have warmed. Endpoints and secrets are
# not held back: clusters wait for them, and holding them would deadlock.
SEND_AFTER: Mapping[str, tuple[str, ...]] = {
    LISTENER: (CLUSTER,),
    ROUTE: (CLUSTER,),
    VIRTUAL_HOST: (CLUSTER,),
}


def may_send(type_url: str, in_flight: Collection[str]) -> bool:
    """Whether `type_url` may go out while responses of the types `in_flight` are
    unanswered."""
    return not any(t in in_flight for t in SEND_AFTER.get(type_url, ()))


@dataclass(frozen=True, slots=True)
class Backoff:
    """How often, and how far apart, a rejected response is offered again."""

    first: float = 0.5  # seconds before the first retry
    factor: float = 2.0
    cap: float = 30.0
    retries: int = 4  # then the rejection stands until the content changes

    def delay(self, done: int) -> float | None:
        """Seconds to wait before retry number `done + 1`; None when none is left."""
        if done >= self.retries:
            return None
        return min(self.cap, self.first * self.factor**done)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A response the proxy rejected, and what it had acknowledged of the types it
    depends on at that moment."""

    content: Mapping[str, str]  # name -> hash of what was rejected
    dependencies: Mapping[str, str]  # type -> version acknowledged when it was rejected
    retries: int = 0


def retry_due(rejection: Rejection, acknowledged: Mapping[str, str]) -> bool:
    """A rejection is worth retrying only once the proxy has acknowledged something
    new of a type it depends on: the cluster the listener named has now warmed. A
    rejection of config that is simply invalid sees no such change and stands."""
    return any(acknowledged.get(t, "") != v for t, v in rejection.dependencies.items())

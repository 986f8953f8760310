"""The ACK/NACK decision rules, as a table."""

from __future__ import annotations

import pytest

from pilotfish_xds.protocol import Decision, Kind, decide_delta, decide_sotw

A = frozenset({"a"})
AB = frozenset({"a", "b"})


@pytest.mark.parametrize(
    ("last_nonce", "nonce", "names", "error", "expected"),
    [
        # first request on a stream
        (None, "", A, False, Decision(Kind.NEW, True)),
        # Envoy carries a nonce from a previous server process: answer it
        (None, "old-7", A, False, Decision(Kind.NEW, True)),
        (None, "old-7", A, True, Decision(Kind.NEW, True)),
        # a fresh subscription on a live stream
        ("n1", "", A, False, Decision(Kind.NEW, True)),
        # stale: we have sent n2 since; ignore even if it is a NACK
        ("n2", "n1", AB, False, Decision(Kind.STALE, False)),
        ("n2", "n1", A, True, Decision(Kind.STALE, False)),
        # NACK: record the version we sent, do not answer
        ("n1", "n1", A, True, Decision(Kind.NACK, False, "v-sent")),
        # plain ACK: nothing to say
        ("n1", "n1", A, False, Decision(Kind.ACK, False, "v-acked")),
        # ACK that also asks for new names: answer
        ("n1", "n1", AB, False, Decision(Kind.ACK, True, "v-acked")),
    ],
)
def test_sotw_rules(
    last_nonce: str | None, nonce: str, names: frozenset[str], error: bool, expected: Decision
) -> None:
    decision = decide_sotw(
        last_nonce=last_nonce,
        last_names=A if last_nonce else None,
        nonce=nonce,
        names=names,
        error=error,
        sent_version="v-sent",
        acked_version="v-acked",
    )
    assert decision == expected


@pytest.mark.parametrize(
    ("known", "nonce", "subscribe", "error", "expected"),
    [
        (False, "", [], False, Decision(Kind.NEW, True)),
        # Delta ACKs carry only the nonce: the version comes from our own map
        (True, "n1", [], False, Decision(Kind.ACK, False, "v1")),
        (True, "n1", [], True, Decision(Kind.NACK, False, "v1")),
        # an ACK that also subscribes: answer
        (True, "n1", ["x"], False, Decision(Kind.ACK, True, "v1")),
        # unknown nonce: no bookkeeping, but subscription changes still count
        (True, "gone", [], False, Decision(Kind.STALE, False)),
        (True, "gone", ["x"], False, Decision(Kind.STALE, True)),
        # a subscription change without a nonce
        (True, "", ["x"], False, Decision(Kind.NEW, True)),
        (True, "", [], False, Decision(Kind.STALE, False)),
    ],
)
def test_delta_rules(
    known: bool, nonce: str, subscribe: list[str], error: bool, expected: Decision
) -> None:
    decision = decide_delta(
        known=known,
        nonce_versions={"n1": "v1"},
        nonce=nonce,
        subscribe=subscribe,
        unsubscribe=[],
        error=error,
    )
    assert decision == expected


def test_delta_unsubscribe_is_a_change() -> None:
    decision = decide_delta(
        known=True, nonce_versions={}, nonce="", subscribe=[], unsubscribe=["x"], error=False
    )
    assert decision.respond

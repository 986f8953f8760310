"""What each proxy was sent, acknowledged and rejected: for logs, metrics, the CLI."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

StreamKind = Literal["sotw", "delta"]


@dataclass
class Nack:
    version: str  # the version Envoy rejected (what we sent with that nonce)
    message: str  # Envoy's error_detail.message
    time: float  # unix seconds


@dataclass
class TypeStatus:
    sent_version: str = ""
    sent_nonce: str = ""
    acked_version: str = ""
    nacks: int = 0
    last_nack: Nack | None = None


@dataclass
class StreamStatus:
    kind: StreamKind
    peer: str
    connected_at: float


@dataclass
class NodeStatus:
    node_id: str
    streams: dict[int, StreamStatus] = field(default_factory=dict)
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def type(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())


CONVERGENCE_BUCKETS = (0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0)
"""Istio's buckets for pilot_proxy_convergence_time (seconds)."""


@dataclass
class Convergence:
    """A histogram of seconds from a change the control plane saw until a proxy had
    acknowledged every type of the config built from it."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(CONVERGENCE_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        index = next((i for i, b in enumerate(CONVERGENCE_BUCKETS) if seconds <= b), -1)
        self.counts[index] += 1
        self.total += seconds
        self.count += 1


class StatusRegistry:
    """Per-node records, kept after disconnect so the last NACK stays visible."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeStatus] = {}
        self._stream_ids = itertools.count(1)
        self.nacks_total = 0
        self.pushes: collections.Counter[str] = collections.Counter()
        """Responses sent, per type URL (Istio's pilot_xds_pushes)."""
        self.rejects: collections.Counter[str] = collections.Counter()
        """NACKs, per type URL (Istio's pilot_total_xds_rejects)."""
        self.convergence = Convergence()
        self._expected: dict[str, tuple[float, bool]] = {}
        """node -> (when the change was seen, whether anything was sent since)."""

    def expect(self, node_id: str, since: float) -> None:
        """A new config for `node_id`, built from what changed at `since`
        (time.monotonic()): converged once something of it was sent and every type sent
        is acknowledged (what the proxy subscribes to decides what is sent)."""
        self._expected[node_id] = (since, False)

    def node(self, node_id: str) -> NodeStatus:
        return self._nodes.setdefault(node_id, NodeStatus(node_id))

    def get(self, node_id: str) -> NodeStatus | None:
        return self._nodes.get(node_id)

    def forget(self, node_id: str) -> None:
        """Drop a node's record (e.g. when its pod is deleted) so memory follows the mesh."""
        self._nodes.pop(node_id, None)
        self._expected.pop(node_id, None)

    def stream_opened(self, node_id: str, kind: StreamKind, peer: str) -> int:
        stream_id = next(self._stream_ids)
        self.node(node_id).streams[stream_id] = StreamStatus(kind, peer, time.time())
        log.info("xDS %s stream %d opened by %s from %s", kind, stream_id, node_id, peer)
        return stream_id

    def stream_closed(self, node_id: str, stream_id: int) -> None:
        self.node(node_id).streams.pop(stream_id, None)
        log.info("xDS stream %d of %s closed", stream_id, node_id)

    def sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        status = self.node(node_id).type(type_url)
        status.sent_version, status.sent_nonce = version, nonce
        self.pushes[type_url] += 1
        expected = self._expected.get(node_id)
        if expected is not None:
            self._expected[node_id] = (expected[0], True)
        log.debug("sent %s %s version %s nonce %s", node_id, type_url, version, nonce)

    def holds(self, node_id: str, type_url: str, version: str) -> None:
        """A proxy that (re)connected already holds `version`, which is what it would
        be sent: recorded as sent and acknowledged, though nothing was pushed."""
        status = self.node(node_id).type(type_url)
        status.sent_version, status.sent_nonce = version, ""
        self.acked(node_id, type_url, version)
        log.debug("%s already holds %s version %s", node_id, type_url, version)

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        node = self.node(node_id)
        node.type(type_url).acked_version = version
        expected = self._expected.get(node_id)
        if (
            expected is not None
            and expected[1]
            and all(t.acked_version == t.sent_version for t in node.types.values())
        ):
            del self._expected[node_id]
            self.convergence.observe(time.monotonic() - expected[0])
        log.debug("ACK %s %s version %s", node_id, type_url, version)

    def nacked(self, node_id: str, type_url: str, version: str, message: str) -> None:
        status = self.node(node_id).type(type_url)
        status.nacks += 1
        status.last_nack = Nack(version, message, time.time())
        self.nacks_total += 1
        self.rejects[type_url] += 1
        log.warning("NACK from %s for %s version %s: %s", node_id, type_url, version, message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nacks_total": self.nacks_total,
            "nodes": {n: dataclasses.asdict(s) for n, s in sorted(self._nodes.items())},
        }

"""What each proxy was sent, acknowledged and rejected: for logs, metrics, the CLI."""

from __future__ import annotations

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


class StatusRegistry:
    """Per-node records, kept after disconnect so the last NACK stays visible."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeStatus] = {}
        self._stream_ids = itertools.count(1)
        self.nacks_total = 0

    def node(self, node_id: str) -> NodeStatus:
        return self._nodes.setdefault(node_id, NodeStatus(node_id))

    def get(self, node_id: str) -> NodeStatus | None:
        return self._nodes.get(node_id)

    def forget(self, node_id: str) -> None:
        """Drop a node's record (e.g. when its pod is deleted) so memory follows the mesh."""
        self._nodes.pop(node_id, None)

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
        log.debug("sent %s %s version %s nonce %s", node_id, type_url, version, nonce)

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        self.node(node_id).type(type_url).acked_version = version
        log.debug("ACK %s %s version %s", node_id, type_url, version)

    def nacked(self, node_id: str, type_url: str, version: str, message: str) -> None:
        status = self.node(node_id).type(type_url)
        status.nacks += 1
        status.last_nack = Nack(version, message, time.time())
        self.nacks_total += 1
        log.warning("NACK from %s for %s version %s: %s", node_id, type_url, version, message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nacks_total": self.nacks_total,
            "nodes": {n: dataclasses.asdict(s) for n, s in sorted(self._nodes.items())},
        }

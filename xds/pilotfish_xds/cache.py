"""The latest snapshot per proxy, and who is connected to ask for one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .snapshot import Snapshot

log = logging.getLogger(__name__)

ConnectCallback = Callable[[str, dict[str, Any]], None]
DisconnectCallback = Callable[[str], None]
Wake = Callable[[], None]


class SnapshotCache:
    """Node id -> snapshot, plus wake-ups for the streams of that node.

    Streams register a wake-up per node; `set` calls it, on the loop the stream
    registered from (`set` may run in another thread: translation can run in an
    executor). A wake-up only marks the stream as owing a push (see `streams`), so
    `set` never waits for any stream.
    """

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, set[tuple[asyncio.AbstractEventLoop, Wake]]] = {}
        self._streams: dict[str, int] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._on_connect: list[ConnectCallback] = []
        self._on_disconnect: list[DisconnectCallback] = []

    # --- snapshots -----------------------------------------------------------
    def set(self, node_id: str, snapshot: Snapshot) -> None:
        if self._snapshots.get(node_id) is snapshot:
            return
        self._snapshots[node_id] = snapshot
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, wake in list(self._watchers.get(node_id, ())):
            if running is loop:
                wake()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(wake)

    def get(self, node_id: str) -> Snapshot | None:
        return self._snapshots.get(node_id)

    def clear(self, node_id: str) -> None:
        """Forget a node's snapshot; its streams keep what they were sent."""
        self._snapshots.pop(node_id, None)

    def nodes(self) -> list[str]:
        return sorted(self._snapshots)

    # --- watchers (used by the server's streams) -----------------------------
    def watch(self, node_id: str, wake: Wake) -> None:
        """`wake()` on every `set` of `node_id`; it must return at once."""
        entry = (asyncio.get_running_loop(), wake)
        self._watchers.setdefault(node_id, set()).add(entry)

    def unwatch(self, node_id: str, wake: Wake) -> None:
        watchers = self._watchers.get(node_id, set())
        watchers -= {w for w in watchers if w[1] == wake}
        if not watchers:
            self._watchers.pop(node_id, None)

    # --- connections ---------------------------------------------------------
    def on_connect(self, callback: ConnectCallback) -> None:
        """`callback(node_id, node_dict)` when a node opens its first stream; it
        should be quick (schedule the translation, don't run it)."""
        self._on_connect.append(callback)

    def on_disconnect(self, callback: DisconnectCallback) -> None:
        """`callback(node_id)` when a node's last stream closes."""
        self._on_disconnect.append(callback)

    def connected(self) -> Mapping[str, dict[str, Any]]:
        """Connected node ids and the node metadata they announced."""
        return {n: self._metadata[n] for n in self._streams}

    def stream_opened(self, node_id: str, node: dict[str, Any]) -> None:
        self._metadata[node_id] = node
        self._streams[node_id] = self._streams.get(node_id, 0) + 1
        if self._streams[node_id] == 1:
            for callback in self._on_connect:
                _call_safely(callback, node_id, node)

    def stream_closed(self, node_id: str) -> None:
        left = self._streams.get(node_id, 0) - 1
        if left > 0:
            self._streams[node_id] = left
            return
        self._streams.pop(node_id, None)
        self._metadata.pop(node_id, None)
        for callback in self._on_disconnect:
            _call_safely(callback, node_id)


def _call_safely(callback: Callable[..., None], *args: Any) -> None:
    # A failing subscriber must not take the xDS stream down with it.
    try:
        callback(*args)
    except Exception:
        log.exception("xDS connection callback %r failed", callback)

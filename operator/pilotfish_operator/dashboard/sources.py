"""Where the dashboard's numbers come from: the sidecars themselves or a Prometheus.

Reading sidecars, rates need two reads: each poll of the page reads every sidecar (at
most once a second, whoever asks) and is compared with the newest read at least a
window older. Nothing is read while nobody looks, so an idle dashboard costs the
control plane nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from .. import meshstats

MIN_INTERVAL = 1.0
"""Seconds between two reads of the sidecars, however many pages poll."""


class Source(Protocol):
    description: str

    async def window(self) -> meshstats.Window | None:
        """The latest window, or None while there is nothing to compare yet."""
        ...


class Sidecars:
    def __init__(self, admins: Callable[[], Sequence[str]], seconds: float = 10.0) -> None:
        self.admins = admins
        self.seconds = seconds
        self.description = "the sidecars' own stats"
        self._reads: deque[tuple[float, meshstats.Counts]] = deque()
        self._lock = asyncio.Lock()

    async def window(self) -> meshstats.Window | None:
        async with self._lock:
            if not self._reads or time.monotonic() - self._reads[-1][0] >= MIN_INTERVAL:
                counts = await asyncio.to_thread(meshstats.read_sidecars, list(self.admins()))
                self._reads.append((time.monotonic(), counts))
            now, latest = self._reads[-1]
            # Keep the newest read at least a window old (the base) and what follows.
            while len(self._reads) > 1 and now - self._reads[1][0] >= self.seconds:
                self._reads.popleft()
            then, base = self._reads[0]
            if now - then > 3 * self.seconds:
                # Nobody looked for a while: a window that long would flatten the rates.
                self._reads = deque([(now, latest)])
                return None
            if then == now:
                return None
            return meshstats.Window(latest.minus(base), now - then)


class Prometheus:
    def __init__(self, url: str, seconds: float = 60.0) -> None:
        self.url = url
        self.seconds = seconds
        self.description = f"Prometheus at {url}"

    async def window(self) -> meshstats.Window | None:
        return await asyncio.to_thread(meshstats.read_prometheus, self.url, self.seconds)

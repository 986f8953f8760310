"""The loop of an object writer that only the leader runs: it writes when woken (an
observed change), on becoming leader, and every ten minutes (restoring what someone
deleted or edited); a failed round is retried after a few seconds. `_written` is what
the subclass last wrote, forgotten when another replica may have written meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

RESYNC_EVERY = 600.0
RETRY_AFTER = 5.0


class LeaderWriter:
    def __init__(self, is_leader: Callable[[], bool]) -> None:
        self.is_leader = is_leader
        self._written: dict[Any, str] = {}
        self._wake = asyncio.Event()
        self._wake.set()

    async def write(self) -> bool:
        """Write what differs; False if a write failed (retried)."""
        raise NotImplementedError

    def leadership_changed(self, leading: bool) -> None:
        self._written.clear()  # another leader may have written meanwhile
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), RESYNC_EVERY)
            except TimeoutError:
                self._written.clear()
            self._wake.clear()
            if not self.is_leader():
                continue
            if not await self.write():
                await asyncio.sleep(RETRY_AFTER)
                self._wake.set()

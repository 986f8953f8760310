"""Objects read by name on a period instead of watched (the mesh ConfigMap, gateway
Secrets): one loop for all of them. An API server that does not answer is logged and
tried again at the next period."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def poll(period: Callable[[], float], read: Callable[[], Awaitable[None]], what: str) -> None:
    """`read()` every `period()` seconds (a callable, so tests may shorten it) until
    cancelled."""
    while True:
        await asyncio.sleep(period())
        try:
            await read()
        except (OSError, TimeoutError) as exc:
            log.warning("%s not read: %s", what, exc)

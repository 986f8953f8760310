"""The webhook tests' fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from webhookharness import Webhook, start_webhook


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    running = await start_webhook()
    try:
        yield running
    finally:
        await running.server.stop()

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from adsclient import Running, running


@pytest.fixture
async def xds() -> AsyncIterator[Running]:
    async with running() as server:
        yield server

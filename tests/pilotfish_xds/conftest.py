from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from adsclient import Running

from pilotfish_xds.cache import SnapshotCache
from pilotfish_xds.server import serve
from pilotfish_xds.status import StatusRegistry


@pytest.fixture
async def xds() -> AsyncIterator[Running]:
    cache, status = SnapshotCache(), StatusRegistry()
    server, port = await serve("127.0.0.1:0", cache, status)
    try:
        yield Running(f"127.0.0.1:{port}", cache, status, server)
    finally:
        await server.stop(grace=None)

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness import Harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness.new(tmp_path)
    try:
        yield h
    finally:
        await h.stop()

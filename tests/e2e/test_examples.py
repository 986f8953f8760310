"""The README's example works as written: examples/bookinfo through real Envoy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from harness import Harness

pytestmark = pytest.mark.envoy

EXAMPLE = Path(__file__).parents[2] / "examples" / "bookinfo"


async def test_bookinfo_example(harness: Harness) -> None:
    for f in EXAMPLE.glob("*.yaml"):
        shutil.copy(f, harness.config / f.name)
    harness.backend("reviews-v1", "127.0.20.11", 9080)
    harness.backend("reviews-v2", "127.0.20.12", 9080)
    await harness.start()
    assert harness.mesh is not None
    assert not harness.mesh.store.errors()
    r = await harness.get("127.0.20.10", "http://reviews:9080/", {"end-user": "jason"})
    assert r.served_by == "reviews-v2"
    counts = await harness.split("127.0.20.10", "http://reviews:9080/", 200)
    assert counts["reviews-v1"] > counts["reviews-v2"] > 0, counts

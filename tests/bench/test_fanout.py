"""bench/fanout.py's core at a tiny size: it must measure the edit at every Envoy and
see traffic move, so the benchmark cannot silently measure nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import fanout

pytestmark = pytest.mark.envoy


@pytest.mark.timeout(300)
@pytest.mark.parametrize("full", [False, True], ids=["scoped", "full"])
async def test_every_envoy_acks_each_edit_and_its_traffic_moves(tmp_path: Path, full: bool) -> None:
    with fanout.backends():
        out = await fanout.run(fanout.Config(services=6, envoys=2, edits=2, full=full), tmp_path)
    assert out["nacks"] == 0
    assert [r["target"] for r in out["runs"]] == ["v2", "v1"]
    for r in out["runs"]:
        assert r["unchanged"] == 0 and r["measured"] == r["carried"] == 2
        changed = "RouteConfiguration" if full else "VirtualHost"
        assert r["changed_types"] == [changed] and r["responses"][changed] >= 2
        # A shift between subsets is one route update: their clusters are already held
        # (a fetched virtual host brings every subset cluster of its service).
        assert set(r["responses"]) == {changed}, r["responses"]
        # Each Envoy ACKed after the rebuild started and after it was sent the change.
        assert len(r["ack_s"]) == 2 and all(0 < a < 60 for a in r["ack_s"])
        assert all(0 <= x <= a for x, a in zip(r["send_to_ack_s"], r["ack_s"], strict=True))
        assert r["traffic_moved"] == 2, r["traffic_other"]
    summary = out["summary"]
    assert summary["expected"] == 4
    assert summary["measured"] == summary["carried"] == summary["traffic_moved"] == 4
    assert summary["rebuild_start_to_ack"]["n"] == 4

"""The test backend misbehaves on request, as the resilience tests need it to: a chosen
status, a pattern of statuses, a delay, a stall, a reset; changed while it runs; and it
counts what it received (per Host, for mirrored copies)."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest
from harness import Harness, _request


def test_statuses_delay_stall_reset_and_counters(tmp_path: Path) -> None:
    h = Harness.new(tmp_path)
    flaky, slow, rude = (f"{h.ip(n)}:8080" for n in (11, 12, 14))
    h.backend("flaky", h.ip(11), 8080, pattern=(500, 500, 200))
    h.backend("slow", h.ip(12), 8080, delay=0.3, status=503)
    h.backend("stuck", h.ip(13), 8080, stall=True)
    h.backend("rude", h.ip(14), 8080, reset=True)
    try:
        assert [_request(flaky, "/", {}, "GET").status for _ in range(6)] == [500, 500, 200] * 2
        started = time.monotonic()
        r = _request(slow, "/", {"host": "slow.shadow"}, "GET")
        assert r.status == 503 and r.served_by == "slow"
        assert time.monotonic() - started >= 0.3

        conn = http.client.HTTPConnection(h.ip(13), 8080, timeout=0.5)
        conn.request("GET", "/")
        with pytest.raises(TimeoutError):
            conn.getresponse()
        conn.close()
        with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
            _request(rude, "/", {}, "GET")
    finally:
        h.stop_backends()


async def test_behaviour_changes_while_running(tmp_path: Path) -> None:
    h = Harness.new(tmp_path)
    address = f"{h.ip(11)}:8080"
    h.backend("web", h.ip(11), 8080)
    try:
        assert _request(address, "/", {"host": "web"}, "GET").status == 200
        stats = await h.stats(address)
        assert stats == {"requests": 1, "hosts": {"web": 1}, "statuses": {"200": 1}}
        await h.behave(address, status=500)
        assert _request(address, "/", {"host": "web-shadow"}, "GET").status == 500
        assert await h.stats(address) == {
            "requests": 1,
            "hosts": {"web-shadow": 1},
            "statuses": {"500": 1},
        }
        await h.behave(address)  # recovered
        assert _request(address, "/", {}, "GET").status == 200
    finally:
        h.stop_backends()

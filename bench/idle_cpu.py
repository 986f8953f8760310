"""Idle CPU of `pilotfish local`: nothing changes, how much CPU does the control plane burn?

A config directory of N services (`workload.py`, one file per service, as a
repository of manifests would be) plus `--sidecars` injected client pods; the
control-plane process is started, and once every sidecar is in sync (the state
file is written) and a settling pause is over, its CPU time (utime + stime from
/proc/<pid>/stat, the sidecars' Envoys excluded) is read at the start and end of
a `--seconds` window.

    python bench/idle_cpu.py [--n 1000] [--sidecars 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import workload

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def client(k: int) -> dict[str, Any]:
    pod = workload.client_pod(f"127.0.9.{10 + k}")
    pod["metadata"]["name"] = f"client-{k}"
    return pod


def write_config(directory: Path, n: int, sidecars: int) -> None:
    objects = list(workload.objects(n, endpoints="pods"))
    head = [o for o in objects if o["kind"] == "Namespace"]
    (directory / "namespaces.yaml").write_text(yaml.safe_dump_all(head))
    (directory / "clients.yaml").write_text(
        yaml.safe_dump_all([client(k) for k in range(sidecars)])
    )
    for i in range(n):
        docs = list(workload.service_objects(i, "pods"))
        (directory / f"svc-{i}.yaml").write_text(yaml.safe_dump_all(docs))


def measure(n: int, sidecars: int, seconds: float, settle: float, workdir: Path) -> dict[str, Any]:
    config = workdir / "config"
    config.mkdir()
    write_config(config, n, sidecars)
    state = workdir / "state.json"
    cli = Path(sys.executable).parent / "pilotfish"
    cmd = [str(cli), "local", "--config", str(config), "--state", str(state)]
    cmd += ["--xds", "127.0.0.1:0", "--monitoring", "127.0.0.1:0"]
    log = (workdir / "control-plane.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.monotonic()
        while not state.exists():
            if proc.poll() is not None or time.monotonic() - started > 600:
                raise SystemExit(f"control plane did not come up; see {workdir}/control-plane.log")
            time.sleep(0.2)
        synced = all(p.get("synced", True) for p in json.loads(state.read_text())["pods"].values())
        time.sleep(settle)
        before, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        after, t1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {
        "services": n,
        "sidecars": sidecars,
        "all_synced": synced,
        "window_s": round(t1 - t0, 1),
        "cpu_s": round(after - before, 2),
        "cores": round((after - before) / (t1 - t0), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="services")
    parser.add_argument("--sidecars", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0, help="idle window measured")
    parser.add_argument("--settle", type=float, default=5.0, help="pause after sync")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pilotfish-idle-") as tmp:
        result = measure(args.n, args.sidecars, args.seconds, args.settle, Path(tmp))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

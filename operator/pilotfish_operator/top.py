"""`pilotfish top`: per service (or workload) success rate, requests per second and
latency percentiles, like `linkerd viz stat`, from Istio's standard metrics as the
servers' sidecars report them (reporter=destination).

It reads the sidecars' own Prometheus endpoints twice, `--window` seconds apart (local
mode's state file lists them), and works on the difference; or, with `--prometheus`,
asks a Prometheus that scrapes the mesh (Istio's metric names) over the last window.
The reading and arithmetic are meshstats' (shared with the dashboard). Envoy publishes
histograms at its stats flush (every 5 s): a window shorter than that shows no latency.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import meshstats

GROUPS = {"service": "destination_service", "workload": "destination_workload"}


@dataclass(frozen=True)
class Row:
    name: str
    requests: float
    success: float | None
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None


def rows(window: meshstats.Window, by: str = "service") -> list[Row]:
    """One row per service (or workload), as the servers' sidecars saw it."""
    groups = window.group((GROUPS[by],), reporter="destination")
    return [
        Row(
            name=name,
            requests=s.requests,
            success=s.success,
            rps=s.rps,
            p50=s.quantile(0.5),
            p95=s.quantile(0.95),
            p99=s.quantile(0.99),
        )
        for (name,), s in sorted(groups.items())
    ]


def render(rows: Sequence[Row], by: str = "service") -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"

    table = [[by.upper(), "SUCCESS", "RPS", "P50", "P95", "P99"]]
    for r in rows:
        success = "-" if r.success is None else f"{r.success * 100:.2f}%"
        table.append([r.name, success, f"{r.rps:.1f}", ms(r.p50), ms(r.p95), ms(r.p99)])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    )


def read(admins: Sequence[str], seconds: float) -> meshstats.Window:
    """Read every sidecar twice, `seconds` apart."""
    before = meshstats.read_sidecars(admins)
    start = time.monotonic()
    time.sleep(seconds)
    after = meshstats.read_sidecars(admins)
    return meshstats.Window(after.minus(before), time.monotonic() - start)


def cmd_top(args: argparse.Namespace) -> int:
    if args.prometheus:
        window = meshstats.read_prometheus(args.prometheus, args.window)
    else:
        admins = list(args.admin) or meshstats.sidecar_admins(
            json.loads(Path(args.state).read_text())
        )
        window = read(admins, args.window)
    print(render(rows(window, args.by), args.by))
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "top", help="per service: success rate, requests/s, p50/p95/p99 (like linkerd viz stat)"
    )
    meshstats.add_source_arguments(p)
    p.add_argument(
        "--window", type=float, default=10.0, help="seconds between the two reads (or looked back)"
    )
    p.add_argument("--by", choices=sorted(GROUPS), default="service", help="group rows by")
    p.set_defaults(func=cmd_top)

"""`pilotfish dashboard`: serve the dashboard on its own, from local mode's state file
(the sidecars it lists), a Prometheus, or sidecar admin addresses, and print its URL.

Local mode and the operator already serve it on their monitoring port; this is for a
workstation: a Prometheus behind a port-forward, or a few sidecars.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

DEFAULT_LISTEN = "127.0.0.1:15015"


def source_of(args: argparse.Namespace) -> Any:
    from .. import meshstats
    from .sources import Prometheus, Sidecars

    if args.prometheus:
        return Prometheus(args.prometheus, args.window or 60.0)
    if args.admin:
        admins = list(args.admin)
        return Sidecars(lambda: admins, args.window or 10.0)
    state = Path(args.state)
    # Re-read on every poll: local mode rewrites the file as pods come and go.
    return Sidecars(
        lambda: meshstats.sidecar_admins(json.loads(state.read_text())), args.window or 10.0
    )


async def serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    from .. import monitoring
    from .server import add_routes

    app = web.Application()
    add_routes(app, source_of(args))

    async def home(_: web.Request) -> web.Response:
        raise web.HTTPFound("/dashboard")

    app.router.add_get("/", home)
    runner, port = await monitoring.start(app, args.listen)
    host = args.listen.rpartition(":")[0] or "127.0.0.1"
    print(f"dashboard: http://{host}:{port}/dashboard  (Ctrl-C stops)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def cmd_dashboard(args: argparse.Namespace) -> int:
    if not (args.state or args.prometheus or args.admin):
        raise SystemExit("pilotfish dashboard: give --state, --prometheus or --admin")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "dashboard",
        help="the live service graph and per-service pages in a browser (prints the URL)",
    )
    from .. import meshstats

    meshstats.add_source_arguments(p)
    p.add_argument(
        "--window",
        type=float,
        help="seconds the rates are over (default 10 reading sidecars, 60 from Prometheus)",
    )
    p.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"address to serve on (default {DEFAULT_LISTEN})"
    )
    p.set_defaults(func=cmd_dashboard)

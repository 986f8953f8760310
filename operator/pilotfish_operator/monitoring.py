"""`/healthz`, `/readyz`, `/metrics` and the dashboard (`/dashboard`) on the monitoring
port (the operator's and local mode's).

Live while the loop answers; ready once the operator has a full view of the
cluster (before that it serves no config, so a rollout should wait for it).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .dashboard import server as dashboard
from .dashboard.sources import Source
from .metrics import CONTENT_TYPE


def app(
    ready: Callable[[], str | None],
    metrics: Callable[[], bytes] | None = None,
    traffic: Source | None = None,
) -> web.Application:
    """`ready()` returns None when ready, else why not; `metrics()` the Prometheus text;
    `traffic` where the dashboard reads the mesh's (None: its page says how to set one)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        reason = ready()
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    async def metrics_page(_: web.Request) -> web.Response:
        assert metrics is not None
        return web.Response(body=metrics(), headers={"content-type": CONTENT_TYPE})

    application = web.Application()
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    if metrics is not None:
        application.router.add_get("/metrics", metrics_page)
    dashboard.add_routes(application, traffic)
    return application


async def start(application: web.Application, address: str) -> tuple[web.AppRunner, int]:
    host, _, port = address.rpartition(":")
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or "0.0.0.0", int(port))
    await site.start()
    server = site._server  # aiohttp has no public way to learn the port picked for 0
    sockets = getattr(server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1] if sockets else int(port)

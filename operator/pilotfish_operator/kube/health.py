"""`/healthz` and `/readyz` on the monitoring port.

Live while the loop answers; ready once the operator has a full view of the
cluster (before that it serves no config, so a rollout should wait for it).
`/metrics` belongs to the monitoring work and is added to the same app there.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


def app(ready: Callable[[], str | None]) -> web.Application:
    """`ready()` returns None when ready, else why not."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        reason = ready()
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    application = web.Application()
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
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

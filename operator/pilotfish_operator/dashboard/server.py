"""The dashboard's routes, added to an aiohttp app (the monitoring server's, or the
standalone `pilotfish dashboard`'s):

    /dashboard                           the service graph (polls the API every 2 s)
    /dashboard/service/<ns>/<name>       one service: by version, by caller
    /dashboard/api/graph                 JSON: nodes and edges
    /dashboard/api/service/<ns>/<name>   JSON: one service
    /dashboard/static/…                  the page's script and style
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from . import graph
from .sources import Source

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
NO_SOURCE = (
    "No metrics source: the control plane reads a Prometheus that scrapes the mesh "
    "(operator flag --prometheus, chart value metrics.prometheusUrl)."
)


def add_routes(app: web.Application, source: Source | None) -> None:
    """`source` None: the pages say how to configure one."""

    async def answer(build: Any) -> web.Response:
        body: dict[str, Any] = {"source": source.description if source else None}
        if source is None:
            return web.json_response(body | {"message": NO_SOURCE, "nodes": [], "edges": []})
        try:
            window = await source.window()
        except OSError as err:  # Prometheus down, a sidecar gone: say so on the page
            log.warning("dashboard: reading %s: %s", source.description, err)
            return web.json_response(body | {"message": f"reading {source.description}: {err}"})
        if window is None:
            return web.json_response(body | {"message": "measuring…", "nodes": [], "edges": []})
        return web.json_response(body | build(window))

    async def graph_api(_: web.Request) -> web.Response:
        return await answer(graph.graph)

    async def service_api(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        return await answer(lambda window: graph.service(window, ns, name))

    def page(name: str) -> Any:
        async def handler(_: web.Request) -> web.FileResponse:
            return web.FileResponse(STATIC / name)

        return handler

    app.router.add_get("/dashboard", page("graph.html"))
    app.router.add_get("/dashboard/", page("graph.html"))
    app.router.add_get("/dashboard/service/{ns}/{name}", page("service.html"))
    app.router.add_get("/dashboard/api/graph", graph_api)
    app.router.add_get("/dashboard/api/service/{ns}/{name}", service_api)
    app.router.add_static("/dashboard/static", STATIC)

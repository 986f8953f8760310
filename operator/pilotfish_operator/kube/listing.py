"""Where kopf's listings end: the one place we reach into kopf's internals.

kopf lists every resource (at start, and again whenever a watch stream has to
start over) and hands the listed objects to handlers as events of type None; it
marks the end of a listing only internally (`Bookmark.LISTED`). Deletions that
happened while we were not watching can only be seen by comparing a *complete*
listing with what we have, so the stream producer is wrapped here to collect
each listing and pass it on whole. Handlers still get every event as before.

The wrapper is installed once per process and routes a listing to the operator
whose kopf task the stream runs in (a context variable), so several operators
(tests) can share a process. `check()` fails loudly if kopf changes underneath.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from kopf._cogs.clients import watching

log = logging.getLogger(__name__)

ListingSink = Callable[[str, str, list[Mapping[str, Any]]], None]
"""`sink(group, plural, objects)` with a complete listing of one resource."""

current_sink: contextvars.ContextVar[ListingSink | None] = contextvars.ContextVar(
    "pilotfish_listing_sink", default=None
)
_MARK = "_pilotfish_listing"


def check() -> None:
    """Refuse to run on a kopf whose watch internals are not the ones this wraps."""
    if not hasattr(watching, "continuous_watch") or not hasattr(watching, "Bookmark"):
        raise RuntimeError("this kopf has no watching.continuous_watch/Bookmark: unsupported")
    if not hasattr(watching.Bookmark, "LISTED"):
        raise RuntimeError("this kopf has no Bookmark.LISTED: unsupported")


def install() -> None:
    check()
    original = watching.continuous_watch
    if getattr(original, _MARK, False):
        return

    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        sink = current_sink.get()
        resource = kwargs.get("resource")
        listing: list[Mapping[str, Any]] | None = [] if sink is not None else None
        async for event in original(**kwargs):
            if listing is not None and sink is not None:
                if event is watching.Bookmark.LISTED:
                    sink(resource.group, resource.plural, listing)  # type: ignore[union-attr]
                    listing = None
                elif isinstance(event, dict) and event.get("type") is None:
                    listing.append(event["object"])
            yield event

    setattr(continuous_watch, _MARK, True)
    # infinite_watch looks it up as a module global on every (re)start.
    watching.continuous_watch = continuous_watch

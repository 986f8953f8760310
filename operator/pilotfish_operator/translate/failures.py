"""A bug in translating one object must not stop the control plane: the object is left
out, the failure reported against it (status, logs), and everything else flows.

`blame` turns an exception into the object's ConfigError (the same shape validation
errors have, so status and Events report it alike); `isolate` finds which of several
objects feeding one result is at fault by translating again without each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..api import ConfigError, Problem
from ..store import Key

log = logging.getLogger(__name__)

Failures = dict[Key, ConfigError]
_T = TypeVar("_T")
_O = TypeVar("_O")

REASON = "TranslationFailed"


def blame(failures: Failures, key: Key, exc: BaseException) -> None:
    kind, namespace, name = key
    if key not in failures:
        log.error("translating %s %s/%s failed; left out", kind, namespace, name, exc_info=exc)
    failures[key] = ConfigError(
        kind,
        namespace,
        name,
        [
            Problem(
                "",
                f"could not be translated ({type(exc).__name__}: {exc}); left out of the "
                "mesh config, everything else is served. This is a Pilotfish bug: please "
                "report it with this message",
            )
        ],
    )


def isolate(
    build: Callable[[Sequence[_O]], _T],
    suspects: Sequence[_O],
    key: Callable[[_O], Key],
    failures: Failures,
) -> tuple[_T, list[_O]] | None:
    """`build(suspects)`; if it raises, blame each suspect `build([suspect])` fails on
    and build from the rest (the caller has checked that `build([])` works). Returns
    the result and the suspects kept, or None when even that fails."""
    try:
        return build(suspects), list(suspects)
    except Exception:
        kept = []
        for suspect in suspects:
            try:
                build([suspect])
                kept.append(suspect)
            except Exception as exc:
                blame(failures, key(suspect), exc)
        try:
            return build(kept), kept
        except Exception:
            return None

"""Translation warnings by the object they are about, for its status.

Every warning names its subject first (`<Kind> <namespace>/<name>: ...`, the form the
passes write); warnings about no single object (a port two services share) stay in
the log only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..store import Key

_SUBJECT = re.compile(r"(?P<kind>[A-Z][A-Za-z]+) (?P<ns>[a-z0-9.-]+)/(?P<name>[a-z0-9.-]+): ")

Findings = dict[Key, tuple[str, ...]]


def by_object(warnings: Iterable[str]) -> Findings:
    """Each subject's warnings (without the subject prefix), in order, once each."""
    out: dict[Key, list[str]] = {}
    for w in warnings:
        m = _SUBJECT.match(w)
        if m is None:
            continue
        said = out.setdefault((m["kind"], m["ns"], m["name"]), [])
        rest = w[m.end() :]
        if rest not in said:
            said.append(rest)
    return {k: tuple(v) for k, v in out.items()}

"""Istio's tie-break between objects that claim the same thing (a host, a workload):
the oldest wins, by creation time, then namespace/name."""

from __future__ import annotations

from datetime import UTC, datetime

from ..api import Resource

_EPOCH = datetime.min.replace(tzinfo=UTC)


def age(obj: Resource) -> tuple[datetime, str, str]:
    """Sort key, oldest first. Objects without a creation time (local files) sort
    first, by namespace/name."""
    ts = obj.metadata.creation_timestamp or _EPOCH
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC), obj.namespace, obj.name)

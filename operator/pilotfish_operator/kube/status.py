"""Status on our own custom resources, written by the leader only.

The Gateway API's kinds carry the status that API specifies instead, computed by
translation (`translate/gateway_api/status.py`) and handed over by `statuses_changed`;
this writer gives it transition times and writes it the same way.

Each VirtualService / DestinationRule gets `status.observedGeneration` and an
`Accepted` condition: True, or False with reason `Invalid`, the field paths and
why (from the Store's ConfigError), plus `status.invalidFields` for tools. A
rejection also gets a Warning Event on the object. An accepted object that translation
warned about (a route no request reaches, a host another object already routes) lists
those warnings in `status.warnings`. Every replica keeps track of
what it saw; on becoming leader it writes whatever is out of date.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..api import ConfigError
from ..api.kinds import BY_KIND
from ..store import Key, Store
from ..translate.failures import REASON
from ..translate.findings import Findings
from .client import ApiError, KubeClient
from .kinds import Watched

log = logging.getLogger(__name__)

COMPONENT = "pilotfish"


@dataclass
class Seen:
    watched: Watched
    uid: str
    generation: int
    status: dict[str, Any]
    """The status the object carries as we last saw (or wrote) it."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def desired(
    error: ConfigError | None,
    generation: int,
    reason: str = "Invalid",
    warnings: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The status an object of `generation` should carry (without transition times);
    `reason` says why an error left it out (Invalid, or TranslationFailed: a bug);
    `warnings`: what translating it reported (in the config, but not all as written)."""
    if error is None:
        condition = {
            "type": "Accepted",
            "status": "True",
            "reason": "Accepted",
            "message": "valid; in the mesh config",
            "observedGeneration": generation,
        }
        invalid: list[dict[str, str]] = []
    else:
        condition = {
            "type": "Accepted",
            "status": "False",
            "reason": reason,
            "message": "; ".join(str(p) for p in error.problems)
            + " (left out of the mesh config; an earlier valid version, if any, stays)",
            "observedGeneration": generation,
        }
        invalid = [{"field": p.path, "reason": p.reason} for p in error.problems]
    out: dict[str, Any] = {"observedGeneration": generation, "conditions": [condition]}
    out["invalidFields"] = invalid or None  # None deletes it in a merge patch
    out["warnings"] = list(warnings) if error is None and warnings else None
    return out


def _gateway_api(error: ConfigError | None, generation: int, computed: Any) -> dict[str, Any]:
    """A Gateway API object's status: translation's, or Accepted False for an invalid one."""
    if error is None:
        return dict(computed or {})
    condition = {
        "type": "Accepted",
        "status": "False",
        "reason": "Invalid",
        "message": "; ".join(str(p) for p in error.problems),
        "observedGeneration": generation,
    }
    return {"conditions": [condition]}


def _without_times(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_times(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _stamp(want: Any, old: Any) -> None:
    """Give every condition in `want` a lastTransitionTime: the old one's where its
    status is unchanged (conditions matched by type, list items by name or position)."""
    if isinstance(want, Mapping):
        for k, v in want.items():
            before = old.get(k) if isinstance(old, Mapping) else None
            if k == "conditions" and isinstance(v, list):
                olds = {c.get("type"): c for c in before or [] if isinstance(c, Mapping)}
                for c in v:
                    prev = olds.get(c["type"]) or {}
                    same = prev.get("status") == c["status"] and "lastTransitionTime" in prev
                    c["lastTransitionTime"] = prev["lastTransitionTime"] if same else _now()
            else:
                _stamp(v, before)
    elif isinstance(want, list):
        items = old if isinstance(old, list) else []
        for i, item in enumerate(want):
            _stamp(item, items[i] if i < len(items) else None)


def _comparable(status: Mapping[str, Any]) -> Any:
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    ]
    return (
        status.get("observedGeneration"),
        conditions,
        status.get("invalidFields") or None,
        status.get("warnings") or None,
    )


class StatusWriter:
    def __init__(self, store: Store, client: KubeClient, is_leader: Callable[[], bool]) -> None:
        self.store = store
        self.client = client
        self.is_leader = is_leader
        self._seen: dict[Key, Seen] = {}
        self._dirty: set[Key] = set()
        self._wake = asyncio.Event()
        self._failures: dict[Key, ConfigError] = {}
        self._gateway_api: dict[Key, dict[str, Any]] = {}
        """The Gateway API objects' status from the last translation."""
        self._findings: Findings = {}
        self._written: dict[Key, tuple[str, Any]] = {}
        """What we last wrote per object (uid, status): a watch event that predates our
        write must not make us write (and post an Event) twice."""
        self.writes = 0

    def observe(self, watched: Watched, key: Key, obj: Mapping[str, Any] | None) -> None:
        """A ClusterView observer: remember our kinds' objects as the API has them."""
        if not watched.istio:
            return
        if obj is None:
            self._seen.pop(key, None)
            self._written.pop(key, None)
            self._dirty.discard(key)
            return
        meta = obj.get("metadata") or {}
        status = obj.get("status")
        self._seen[key] = Seen(
            watched,
            str(meta.get("uid") or ""),
            int(meta.get("generation") or 0),
            dict(status) if isinstance(status, Mapping) else {},
        )
        self._dirty.add(key)
        self._wake.set()

    def leadership_changed(self, leading: bool) -> None:
        self._written.clear()  # others may have written meanwhile
        if leading:
            self._dirty |= self._seen.keys()  # catch up on what the last leader left
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.is_leader():
                continue  # stays dirty; written if we become leader
            await self.flush()

    def failures_changed(self, failures: Mapping[Key, ConfigError]) -> None:
        """A Pipeline callback: objects that failed (or stopped failing) to translate."""
        changed = (failures.keys() | self._failures.keys()) & self._seen.keys()
        self._failures = dict(failures)
        self._dirty |= changed
        if changed:
            self._wake.set()

    def statuses_changed(self, statuses: Mapping[Key, dict[str, Any]]) -> None:
        """A Pipeline callback: the Gateway API objects' status changed."""
        changed = {
            k
            for k in statuses.keys() | self._gateway_api.keys()
            if statuses.get(k) != self._gateway_api.get(k)
        } & self._seen.keys()
        self._gateway_api = dict(statuses)
        self._dirty |= changed
        if changed:
            self._wake.set()

    def findings_changed(self, findings: Findings) -> None:
        """A Pipeline callback: translation warnings by object changed."""
        before = self._findings
        changed = {k for k in findings.keys() | before.keys() if findings.get(k) != before.get(k)}
        changed &= self._seen.keys()
        self._findings = dict(findings)
        self._dirty |= changed
        if changed:
            self._wake.set()

    async def flush(self) -> None:
        for key in sorted(self._dirty):
            self._dirty.discard(key)
            seen = self._seen.get(key)
            # Read the object's error now, not once per flush: a failure reported while an
            # earlier write was awaited must not be overwritten with a stale verdict.
            error = self.store.errors().get(key) or self._failures.get(key)
            if seen is None or (error is None and self.store.get(key) is None):
                continue
            try:
                await self._write(key, seen, error)
            except (ApiError, OSError, TimeoutError) as err:
                if isinstance(err, ApiError) and err.status == 404:
                    continue  # deleted meanwhile
                log.warning("status of %s %s/%s: %s", *key, err)
                self._dirty.add(key)  # retried on the next wake-up

    async def _write(self, key: Key, seen: Seen, error: ConfigError | None) -> None:
        spec = BY_KIND.get(key[0])
        if spec is not None and spec.status == "gateway-api":
            await self._write_gateway_api(key, seen, error)
            return
        failed = error is not None and error is self._failures.get(key)
        want = desired(
            error, seen.generation, REASON if failed else "Invalid", self._findings.get(key, ())
        )
        target = _comparable(want)
        if target == _comparable(seen.status) or self._written.get(key) == (seen.uid, target):
            return
        old = {c.get("type"): c for c in seen.status.get("conditions") or []}
        for condition in want["conditions"]:
            before = old.get(condition["type"]) or {}
            same = before.get("status") == condition["status"]
            condition["lastTransitionTime"] = (
                before.get("lastTransitionTime")
                if same and "lastTransitionTime" in before
                else _now()
            )
        kind, namespace, name = key
        await self.client.patch(seen.watched.path(namespace, name, "status"), {"status": want})
        self.writes += 1
        self._written[key] = (seen.uid, target)
        seen.status = {k: v for k, v in want.items() if v is not None}
        log.info("status of %s %s/%s: %s", kind, namespace, name, want["conditions"][0]["reason"])
        if error is not None:
            await self._event(seen, key, error)

    async def _write_gateway_api(self, key: Key, seen: Seen, error: ConfigError | None) -> None:
        if error is None and key not in self._gateway_api:
            return  # not ours (another controller's class), or not translated yet
        want = _gateway_api(error, seen.generation, self._gateway_api.get(key))
        target = _without_times(want)
        mine = {k: seen.status.get(k) for k in want}
        if target == _without_times(mine) or self._written.get(key) == (seen.uid, target):
            return
        _stamp(want, seen.status)
        kind, namespace, name = key
        await self.client.patch(seen.watched.path(namespace, name, "status"), {"status": want})
        self.writes += 1
        self._written[key] = (seen.uid, target)
        seen.status = {**seen.status, **want}
        log.info("status of %s %s/%s written", kind, namespace, name)
        if error is not None:
            await self._event(seen, key, error)

    async def _event(self, seen: Seen, key: Key, error: ConfigError) -> None:
        _, namespace, name = key
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": seen.watched.api_version,
                "kind": seen.watched.wire_kind,
                "namespace": namespace,
                "name": name,
                "uid": seen.uid,
            },
            "type": "Warning",
            "reason": (REASON if error is self._failures.get(key) else "Invalid"),
            "message": str(error)[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.client.post(f"/api/v1/namespaces/{namespace}/events", event)

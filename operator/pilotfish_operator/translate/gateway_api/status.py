"""The Gateway API's status from conversion's verdicts: GatewayClass `Accepted`;
Gateway `Accepted`, `Programmed`, addresses and per listener `Accepted`,
`ResolvedRefs`, `Programmed` and `attachedRoutes`; each route's `parents[]` (one per
parentRef of ours) with `Accepted` and `ResolvedRefs`. Transition times are the
status writer's."""

from __future__ import annotations

from typing import Any

from ...api.gateway_api import CONTROLLER
from ...store import Key
from .convert import Converted, Verdict


def _condition(kind: str, verdict: Verdict, generation: int) -> dict[str, Any]:
    ok, reason, message = verdict
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _parent_ref(ref: Any) -> dict[str, Any]:
    out: dict[str, Any] = ref.model_dump(by_alias=True, exclude_none=True)
    return out


def statuses(converted: Converted) -> dict[Key, dict[str, Any]]:
    """The status every Gateway API object of ours should carry, by store key."""
    out: dict[Key, dict[str, Any]] = {}
    for key, (gen, verdict) in converted.classes.items():
        out[key] = {"conditions": [_condition("Accepted", verdict, gen)]}
    for key, (gen, gw) in converted.gateway_status.items():
        listeners = []
        for lv in gw.listeners:
            kinds = lv.listener.route_kinds()
            listeners.append(
                {
                    "name": lv.listener.name,
                    "supportedKinds": [
                        {"group": "gateway.networking.k8s.io", "kind": k} for k in kinds
                    ],
                    "attachedRoutes": lv.attached,
                    "conditions": [
                        _condition("Accepted", (True, "Accepted", ""), gen),
                        _condition("ResolvedRefs", lv.resolved, gen),
                        _condition("Programmed", lv.programmed, gen),
                    ],
                }
            )
        out[key] = {
            "conditions": [
                _condition("Accepted", gw.accepted, gen),
                _condition("Programmed", gw.programmed, gen),
            ],
            "listeners": listeners,
            "addresses": [{"type": t, "value": v} for t, v in gw.addresses] or None,
        }
    for key, (gen, parents) in converted.routes.items():
        out[key] = {
            "parents": [
                {
                    "parentRef": _parent_ref(p.ref),
                    "controllerName": CONTROLLER,
                    "conditions": [
                        _condition("Accepted", p.accepted, gen),
                        _condition("ResolvedRefs", p.resolved, gen),
                    ],
                }
                for p in parents
            ]
        }
    return out

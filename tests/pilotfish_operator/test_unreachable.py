"""Routes that can never be taken are reported with the VirtualService and the route."""

from __future__ import annotations

from typing import Any

from pilotfish_operator.api import VirtualService, parse
from pilotfish_operator.translate.unreachable import unreachable


def _vs(**spec: Any) -> VirtualService:
    obj = parse(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"hosts": ["web"], **spec},
        }
    )
    assert isinstance(obj, VirtualService)
    return obj


def _to(host: str) -> dict[str, Any]:
    return {"route": [{"destination": {"host": host}}]}


def test_routes_after_a_catch_all_are_reported() -> None:
    vs = _vs(
        http=[
            {"match": [{"headers": {"x-v": {"exact": "2"}}}], **_to("v2")},
            {"match": [{"uri": {"prefix": "/"}}], **_to("v1")},
            {"match": [{"uri": {"prefix": "/api"}}], **_to("api")},
            _to("v3"),
        ]
    )
    assert unreachable(vs) == [
        "VirtualService shop/web: spec.http[2] is never used: spec.http[1] takes every "
        "request before it",
        "VirtualService shop/web: spec.http[3] is never used: spec.http[1] takes every "
        "request before it",
    ]


def test_a_route_whose_matches_all_came_earlier_is_reported() -> None:
    a = {"uri": {"prefix": "/a"}}
    b = {"uri": {"exact": "/b"}}
    vs = _vs(
        http=[
            {"match": [a], **_to("x")},
            {"match": [{"name": "named", **a}], **_to("y")},  # names do not count
            {"match": [a, b], **_to("z")},  # /b is new: reachable
        ]
    )
    assert unreachable(vs) == [
        "VirtualService shop/web: spec.http[1] is never used: each of its matches repeats "
        "an earlier route's"
    ]


def test_reachable_routes_and_scoped_catch_alls_are_not_reported() -> None:
    vs = _vs(
        gateways=["mesh", "edge"],
        http=[
            # Everything, but only at one gateway: the mesh still reaches the next route.
            {"match": [{"gateways": ["edge"]}], **_to("edge")},
            {"match": [{"port": 8080}], **_to("alt")},
            _to("v1"),
        ],
    )
    assert unreachable(vs) == []
    tls = _vs(
        hosts=["*.example"],
        tls=[
            {"match": [{"sniHosts": ["a.example"]}], **_to("a")},
            {"match": [{"sniHosts": ["b.example"]}], **_to("b")},
        ],
    )
    assert unreachable(tls) == []


def test_tcp_routes_after_an_unmatched_one() -> None:
    vs = _vs(tcp=[_to("db"), {"match": [{"port": 5432}], **_to("other")}])
    assert unreachable(vs) == [
        "VirtualService shop/web: spec.tcp[1] is never used: spec.tcp[0] takes every "
        "request before it"
    ]

"""Bad input through local mode, with real Envoy: every kind of mistake gets a clear
error (kind, namespace/name, field path, reason), is left out, and what Envoy
already routes keeps working."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

TAG = "x-routed-by"


def topology(h: Harness) -> list[dict[str, Any]]:
    """web (subsets a, b) and api in shop, and a client."""
    objs: list[dict[str, Any]] = [
        namespace("shop"),
        pod("client", "shop", h.ip(10), {"app": "client"}),
        service("web", "shop", {"app": "web"}, (8080,)),
        service("api", "shop", {"app": "api"}, (8080,)),
        istio(
            "DestinationRule",
            "web",
            "shop",
            {"host": "web", "subsets": [{"name": v, "labels": {"version": v}} for v in "ab"]},
        ),
    ]
    for i, (name, labels) in enumerate(
        [
            ("web-a", {"app": "web", "version": "a"}),
            ("web-b", {"app": "web", "version": "b"}),
            ("api", {"app": "api"}),
        ]
    ):
        h.backend(name, h.ip(11 + i), 8080)
        objs.append(pod(name, "shop", h.ip(11 + i), labels, (8080,)))
    return objs


def web_vs(subset: str, **route_extra: Any) -> dict[str, Any]:
    return istio(
        "VirtualService",
        "web",
        "shop",
        {
            "hosts": ["web"],
            "http": [
                {
                    "route": [{"destination": {"host": "web", "subset": subset}, **route_extra}],
                    "headers": {"request": {"set": {TAG: f"web-vs-{subset}"}}},
                }
            ],
        },
    )


def api_vs(http: dict[str, Any]) -> dict[str, Any]:
    """A VirtualService for api that, were it applied, would answer 500 itself."""
    route = {"directResponse": {"status": 500, "body": {"string": "applied"}}, **http}
    return istio("VirtualService", "api", "shop", {"hosts": ["api"], "http": [route]})


async def assert_routing(h: Harness, web_subset: str) -> None:
    client = h.ip(10)
    for _ in range(4):
        r = await h.get(client, "http://web:8080/")
        assert (r.status, r.served_by, r.json["headers"].get(TAG)) == (
            200,
            f"web-{web_subset}",
            f"web-vs-{web_subset}",
        ), r
        r = await h.get(client, "http://api:8080/")
        assert (r.status, r.served_by) == (200, "api"), r


def error_of(h: Harness, kind: str, name: str) -> str:
    assert h.mesh is not None
    errors = h.mesh.store.errors()
    assert (kind, "shop", name) in errors, errors
    return str(errors[(kind, "shop", name)])


BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    # case: (object, field path, reason)
    "unknown-field": (
        istio("VirtualService", "api", "shop", {"hosts": ["api"], "htttp": []}),
        "spec.htttp",
        "unknown field",
    ),
    "unknown-nested-field": (
        api_vs({"match": [{"uri": {"prefx": "/x"}}]}),
        "spec.http[0].match[0].uri.prefx",
        "unknown field",
    ),
    "wrong-type": (
        istio(
            "VirtualService",
            "api",
            "shop",
            {
                "hosts": ["api"],
                "http": [{"route": [{"destination": {"host": "api"}, "weight": "100"}]}],
            },
        ),
        "spec.http[0].route[0].weight",
        'must be an integer (got "100")',
    ),
    "negative-weight": (
        istio(
            "VirtualService",
            "api",
            "shop",
            {
                "hosts": ["api"],
                "http": [
                    {
                        "route": [
                            {"destination": {"host": "web", "subset": "a"}, "weight": 110},
                            {"destination": {"host": "api"}, "weight": -10},
                        ]
                    }
                ],
            },
        ),
        "spec.http[0].route[1].weight",
        "must be >= 0 (got -10)",
    ),
    "bad-regex": (
        api_vs({"match": [{"uri": {"regex": "/a(?=x)"}}]}),
        "spec.http[0].match[0].uri.regex",
        "not a valid RE2 regex",
    ),
    "bad-duration": (
        istio(
            "VirtualService",
            "api",
            "shop",
            {
                "hosts": ["api"],
                "http": [{"route": [{"destination": {"host": "api"}}], "timeout": "5 seconds"}],
            },
        ),
        "spec.http[0].timeout",
        "must be a duration",
    ),
    "port-out-of-range": (
        istio(
            "VirtualService",
            "api",
            "shop",
            {
                "hosts": ["api"],
                "http": [{"route": [{"destination": {"host": "api", "port": {"number": 70000}}}]}],
            },
        ),
        "spec.http[0].route[0].destination.port.number",
        "must be <= 65535 (got 70000)",
    ),
    "destination-rule-bad-type": (
        istio(
            "DestinationRule",
            "api",
            "shop",
            {"host": "api", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}},
        ),
        "spec.trafficPolicy.loadBalancer.simple",
        "must be one of",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_invalid_object_is_reported_and_left_out(harness: Harness, case: str) -> None:
    obj, path, reason = BAD[case]
    harness.write("base.yaml", *topology(harness))
    harness.write("vs.yaml", web_vs("b"))
    await harness.start()
    await assert_routing(harness, "b")

    # The bad object comes in the same edit of the same file as a good change to
    # web's routing: only the bad one is left out.
    await harness.apply("vs.yaml", web_vs("a"), obj)
    message = error_of(harness, obj["kind"], obj["metadata"]["name"])
    assert message.startswith(f"{obj['kind']} shop/{obj['metadata']['name']}: "), message
    assert path in message and reason in message, message
    assert f"{path}: " in message, message  # the path, then why
    await assert_routing(harness, "a")


async def test_file_that_is_not_yaml_keeps_its_previous_objects(harness: Harness) -> None:
    harness.write("base.yaml", *topology(harness))
    harness.write("vs.yaml", web_vs("b"))
    await harness.start()
    await assert_routing(harness, "b")

    assert harness.mesh is not None
    harness.write_text("vs.yaml", "apiVersion: networking.istio.io/v1\nkind: [VirtualService\n")
    await harness.synced()
    errors = harness.mesh.source.file_errors
    assert list(errors) == [harness.config / "vs.yaml"], errors
    message = errors[harness.config / "vs.yaml"]
    assert "vs.yaml" in message and "cannot read" in message, message
    assert "line 2" in message, message  # where in the file
    await assert_routing(harness, "b")

    # Other files keep flowing while this one is broken.
    await harness.apply("api.yaml", api_vs({}))
    r = await harness.get(harness.ip(10), "http://api:8080/")
    assert (r.status, r.body) == (500, b"applied")

    # Fixed: the file error goes away and its new content applies.
    await harness.apply("vs.yaml", web_vs("a"))
    assert harness.mesh.source.file_errors == {}
    r = await harness.get(harness.ip(10), "http://web:8080/")
    assert r.served_by == "web-a"


async def test_edit_making_a_virtualservice_invalid_keeps_the_last_good_routing(
    harness: Harness,
) -> None:
    harness.write("base.yaml", *topology(harness))
    harness.write("vs.yaml", web_vs("b"))
    await harness.start()
    await assert_routing(harness, "b")

    # Would route to a, but with a negative weight: rejected, Envoy keeps routing to b.
    await harness.apply("vs.yaml", web_vs("a", weight=-1))
    message = error_of(harness, "VirtualService", "web")
    assert "VirtualService shop/web: spec.http[0].route[0].weight: must be >= 0 (got -1)" in message
    await assert_routing(harness, "b")

    # A bad regex is rejected the same way, before Envoy ever sees it.
    bad = web_vs("a")
    bad["spec"]["http"][0]["match"] = [{"headers": {"x-user": {"regex": "(?=x)"}}}]
    await harness.apply("vs.yaml", bad)
    message = error_of(harness, "VirtualService", "web")
    assert "spec.http[0].match[0].headers.x-user.regex: not a valid RE2 regex" in message, message
    await assert_routing(harness, "b")

    # Fixed: the error clears and the new routing applies.
    await harness.apply("vs.yaml", web_vs("a"))
    assert harness.mesh is not None and harness.mesh.store.errors() == {}
    await assert_routing(harness, "a")

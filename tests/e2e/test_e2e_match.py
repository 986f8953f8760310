"""VirtualService HTTP matching through real Envoy: which backend a client reaches.

Every case routes requests that match to subset `a` and everything else to
subset `b` (a catch-all second route), so a broken match shows up as the wrong
backend answering, not as a silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy


@dataclass(frozen=True)
class Req:
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    authority: str = "web:8080"

    @property
    def url(self) -> str:
        return f"http://{self.authority}{self.path}"


def dest(subset: str, host: str = "web") -> dict[str, Any]:
    return {"destination": {"host": host, "subset": subset}}


def web(h: Harness, ports: dict[int, int] | tuple[int, ...] = (8080,)) -> list[dict[str, Any]]:
    """Service web (pods web-a and web-b, subsets a and b) in namespace shop."""
    a, b = h.ip(11), h.ip(12)
    h.backend("web-a", a, 8080)
    h.backend("web-b", b, 8080)
    return [
        namespace("shop"),
        service("web", "shop", {"app": "web"}, ports),
        pod("web-a", "shop", a, {"app": "web", "version": "a"}, (8080,)),
        pod("web-b", "shop", b, {"app": "web", "version": "b"}, (8080,)),
        istio(
            "DestinationRule",
            "web",
            "shop",
            {"host": "web", "subsets": [{"name": v, "labels": {"version": v}} for v in "ab"]},
        ),
    ]


def vs(http: list[dict[str, Any]], name: str = "web", ns: str = "shop") -> dict[str, Any]:
    return istio("VirtualService", name, ns, {"hosts": ["web"], "http": http})


def a_else_b(*blocks: dict[str, Any]) -> dict[str, Any]:
    return vs([{"match": list(blocks), "route": [dest("a")]}, {"route": [dest("b")]}])


async def served(h: Harness, client: str, req: Req) -> str | None:
    r = await h.get(client, req.url, req.headers, req.method)
    assert r.status == 200, (req, r.status, r.body)
    return r.served_by


CASES: dict[str, tuple[list[dict[str, Any]], list[Req], list[Req]]] = {
    # name: (match blocks, requests that must reach web-a, requests that must reach web-b)
    "uri-exact": (
        [{"uri": {"exact": "/login"}}],
        [Req("/login")],
        [Req("/login/x"), Req("/loginx"), Req("/"), Req("/Login")],
    ),
    "uri-prefix": (
        [{"uri": {"prefix": "/api"}}],
        [Req("/api"), Req("/api/v1/items"), Req("/apix")],
        [Req("/ap"), Req("/v1/api"), Req("/API")],
    ),
    "uri-regex": (
        [{"uri": {"regex": "/item/[0-9]+"}}],
        [Req("/item/42"), Req("/item/7")],
        # RE2 full match: no partial hits at either end
        [Req("/item/abc"), Req("/item/42/x"), Req("/x/item/42")],
    ),
    "uri-exact-ignore-case": (
        [{"uri": {"exact": "/Login"}, "ignoreUriCase": True}],
        [Req("/login"), Req("/LOGIN"), Req("/Login")],
        [Req("/logout"), Req("/login/x")],
    ),
    "uri-prefix-ignore-case": (
        [{"uri": {"prefix": "/API/"}, "ignoreUriCase": True}],
        [Req("/api/x"), Req("/Api/Y")],
        [Req("/apix"), Req("/")],
    ),
    "uri-regex-ignore-case": (
        [{"uri": {"regex": "/item/[a-z]+"}, "ignoreUriCase": True}],
        [Req("/ITEM/ABC"), Req("/item/abc")],
        [Req("/item/42")],
    ),
    "header-exact": (
        [{"headers": {"x-user": {"exact": "alice"}}}],
        [Req(headers={"x-user": "alice"}), Req(headers={"X-User": "alice"})],
        [Req(headers={"x-user": "bob"}), Req(headers={"x-user": "alice2"}), Req()],
    ),
    "header-prefix": (
        [{"headers": {"x-user": {"prefix": "al"}}}],
        [Req(headers={"x-user": "alice"}), Req(headers={"x-user": "al"})],
        [Req(headers={"x-user": "bob"}), Req(headers={"x-user": "xal"}), Req()],
    ),
    "header-regex": (
        [{"headers": {"x-version": {"regex": "v[12]"}}}],
        [Req(headers={"x-version": "v1"}), Req(headers={"x-version": "v2"})],
        [Req(headers={"x-version": "v3"}), Req(headers={"x-version": "v12"}), Req()],
    ),
    "header-present": (
        [{"headers": {"x-canary": {}}}],
        [Req(headers={"x-canary": "1"}), Req(headers={"x-canary": "anything"})],
        [Req(), Req(headers={"x-other": "1"})],
    ),
    "query-exact": (
        [{"queryParams": {"version": {"exact": "2"}}}],
        [Req("/?version=2"), Req("/p?a=1&version=2")],
        [Req("/?version=20"), Req("/?version=1"), Req("/"), Req("/?v=2")],
    ),
    "query-regex": (
        [{"queryParams": {"id": {"regex": "[0-9]+"}}}],
        [Req("/?id=123"), Req("/x?id=7&b=c")],
        [Req("/?id=12a"), Req("/?id="), Req("/")],
    ),
    "authority-exact": (
        [{"authority": {"exact": "web.shop:8080"}}],
        [Req(authority="web.shop:8080")],
        [Req(authority="web:8080"), Req(authority="web.shop.svc.cluster.local:8080")],
    ),
    "authority-prefix": (
        [{"authority": {"prefix": "web.shop"}}],
        [Req(authority="web.shop:8080"), Req(authority="web.shop.svc.cluster.local:8080")],
        [Req(authority="web:8080")],
    ),
    "method": (
        [{"method": {"exact": "POST"}}],
        [Req(method="POST")],
        [Req(method="GET"), Req(method="PUT")],
    ),
    "scheme-http": (
        [{"scheme": {"exact": "http"}}],
        [Req(), Req("/x")],
        [],
    ),
    "scheme-https-never-matches-plain-http": (
        [{"scheme": {"exact": "https"}}],
        [],
        [Req(), Req("/x")],
    ),
    "without-headers-value": (
        [{"withoutHeaders": {"x-debug": {"exact": "1"}}}],
        [Req(headers={"x-debug": "0"}), Req(headers={"x-debug": "10"})],
        [Req(headers={"x-debug": "1"})],
    ),
    "without-headers-presence": (
        [{"withoutHeaders": {"x-debug": {}}}],
        [Req(), Req(headers={"x-other": "1"})],
        [Req(headers={"x-debug": "0"})],
    ),
    "fields-in-one-block-are-anded": (
        [
            {
                "uri": {"prefix": "/api"},
                "headers": {"x-user": {"exact": "alice"}},
                "method": {"exact": "GET"},
            }
        ],
        [Req("/api/x", {"x-user": "alice"})],
        [
            Req("/api/x", {"x-user": "bob"}),
            Req("/api/x"),
            Req("/other", {"x-user": "alice"}),
            Req("/api/x", {"x-user": "alice"}, "POST"),
        ],
    ),
    "blocks-are-ored": (
        [{"uri": {"prefix": "/a/"}}, {"headers": {"x-user": {"exact": "alice"}}}],
        [Req("/a/1"), Req("/b", {"x-user": "alice"}), Req("/a/1", {"x-user": "bob"})],
        [Req("/b"), Req("/b", {"x-user": "bob"})],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_match(harness: Harness, case: str) -> None:
    blocks, hits, misses = CASES[case]
    client = harness.ip(10)
    harness.write("base.yaml", *web(harness), pod("client", "shop", client, {"app": "client"}))
    harness.write("vs.yaml", a_else_b(*blocks))
    await harness.start()
    got = [(req, await served(harness, client, req)) for req in [*hits, *misses]]
    want = [(req, "web-a") for req in hits] + [(req, "web-b") for req in misses]
    assert got == want


async def test_port_match_restricts_route_to_one_service_port(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        *web(harness, {8080: 8080, 9090: 8080}),
        pod("client", "shop", client, {"app": "client"}),
    )
    harness.write("vs.yaml", a_else_b({"port": 9090}))
    await harness.start()
    for _ in range(3):
        assert await served(harness, client, Req(authority="web:9090")) == "web-a"
        assert await served(harness, client, Req(authority="web.shop:9090")) == "web-a"
        assert await served(harness, client, Req(authority="web:8080")) == "web-b"


async def test_source_labels_select_the_client(harness: Harness) -> None:
    x, y = harness.ip(10), harness.ip(20)
    harness.write(
        "base.yaml",
        *web(harness),
        pod("client-x", "shop", x, {"app": "x", "tier": "front"}),
        pod("client-y", "shop", y, {"app": "y", "tier": "front"}),
    )
    harness.write("vs.yaml", a_else_b({"sourceLabels": {"app": "x", "tier": "front"}}))
    await harness.start()
    for _ in range(3):
        assert await served(harness, x, Req()) == "web-a"
        assert await served(harness, y, Req()) == "web-b"


async def test_source_namespace_selects_the_client(harness: Harness) -> None:
    here, there = harness.ip(10), harness.ip(20)
    harness.write(
        "base.yaml",
        *web(harness),
        namespace("other"),
        pod("client", "shop", here, {"app": "client"}),
        pod("client", "other", there, {"app": "client"}),
    )
    harness.write("vs.yaml", a_else_b({"sourceNamespace": "other"}))
    await harness.start()
    for _ in range(3):
        assert await served(harness, there, Req(authority="web.shop:8080")) == "web-a"
        assert await served(harness, here, Req(authority="web.shop:8080")) == "web-b"
        assert await served(harness, here, Req()) == "web-b"


async def test_first_matching_route_wins(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write("base.yaml", *web(harness), pod("client", "shop", client, {"app": "client"}))
    narrow = {"match": [{"uri": {"prefix": "/api/v2"}}], "route": [dest("a")]}
    wide = {"match": [{"uri": {"prefix": "/api"}}], "route": [dest("b")]}
    harness.write("vs.yaml", vs([narrow, wide]))
    await harness.start()
    assert await served(harness, client, Req("/api/v2/x")) == "web-a"
    assert await served(harness, client, Req("/api/v1/x")) == "web-b"

    # Same routes, other order: the wide prefix now shadows the narrow one.
    await harness.apply("vs.yaml", vs([wide, narrow]))
    assert await served(harness, client, Req("/api/v2/x")) == "web-b"
    assert await served(harness, client, Req("/api/v1/x")) == "web-b"


async def test_request_matching_no_route_gets_404(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write("base.yaml", *web(harness), pod("client", "shop", client, {"app": "client"}))
    harness.write("vs.yaml", vs([{"match": [{"uri": {"prefix": "/only"}}], "route": [dest("a")]}]))
    await harness.start()
    assert await served(harness, client, Req("/only/x")) == "web-a"
    for path in ("/", "/other", "/onl"):
        r = await harness.get(client, f"http://web:8080{path}")
        assert r.status == 404, (path, r.status, r.body)
        assert r.served_by is None

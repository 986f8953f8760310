"""What a VirtualService does with a matched request, through real Envoy: weighted
destinations (subsets, hosts, ports), redirects, rewrites, direct responses, header
operations, the forms of `hosts`, cross-namespace routing and exportTo."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

N = 1000
TAG = "x-routed-by"  # set by the VirtualService under test, so its effect is unambiguous


def within(count: int, n: int, share: float) -> bool:
    """Within 5 binomial standard deviations of the expected count."""
    return abs(count - n * share) <= 5 * math.sqrt(n * share * (1 - share))


def dest(
    host: str, subset: str | None = None, port: int | None = None, **extra: Any
) -> dict[str, Any]:
    d: dict[str, Any] = {"host": host}
    if subset:
        d["subset"] = subset
    if port:
        d["port"] = {"number": port}
    return {"destination": d, **extra}


def vs(
    name: str, ns: str, hosts: list[str], http: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    return istio("VirtualService", name, ns, {"hosts": hosts, "http": http, **spec})


def subsets_rule(host: str, ns: str, names: str) -> dict[str, Any]:
    return istio(
        "DestinationRule",
        host,
        ns,
        {"host": host, "subsets": [{"name": v, "labels": {"version": v}} for v in names]},
    )


def web(h: Harness, versions: str = "ab", first: int = 11) -> list[dict[str, Any]]:
    """Service web in shop, one pod web-<v> per version, and a subset per version."""
    objs: list[dict[str, Any]] = [service("web", "shop", {"app": "web"}, (8080,))]
    for i, v in enumerate(versions):
        ip = h.ip(first + i)
        h.backend(f"web-{v}", ip, 8080)
        objs.append(pod(f"web-{v}", "shop", ip, {"app": "web", "version": v}, (8080,)))
    return [*objs, subsets_rule("web", "shop", versions)]


def tagged(*route: dict[str, Any], tag: str = "vs") -> dict[str, Any]:
    """An HTTP route whose requests carry TAG, so the backend shows the VS applied."""
    return {"route": list(route), "headers": {"request": {"set": {TAG: tag}}}}


# ---------------------------------------------------------------- raw headers


def raw_get(
    proxy: str, url: str, headers: list[tuple[str, str]]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A request with repeatable headers; every response header line, in order."""
    host, port = proxy.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", url, skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", url.split("/")[2])
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()], r.read()
    finally:
        conn.close()


def values(lines: list[tuple[str, str]] | list[list[str]], name: str) -> list[str]:
    """All values of a header, whether repeated as lines or comma-joined in one."""
    return [v.strip() for k, line in lines if k == name for v in line.split(",")]


@contextmanager
def raw_echo(name: str, ip: str, port: int) -> Iterator[None]:
    """An in-process backend that reports every request header line (the echo
    server keeps one value per name) and answers with three headers to operate on."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            body = json.dumps([[k.lower(), v] for k, v in self.headers.items()]).encode()
            self.send_response(200)
            for h in ("x-app-a", "x-app-b", "x-app-c"):
                self.send_header(h, "app")
            self.send_header("x-served-by", name)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((ip, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- weights


async def test_weighted_across_three_subsets(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        *web(harness, "abc"),
        vs(
            "web",
            "shop",
            ["web"],
            [
                {
                    "route": [
                        dest("web", "a", weight=60),
                        dest("web", "b", weight=30),
                        dest("web", "c", weight=10),
                    ]
                }
            ],
        ),
    )
    await harness.start()
    counts = await harness.split(client, "http://web:8080/", N)
    assert sum(counts.values()) == N and set(counts) <= {"web-a", "web-b", "web-c"}, counts
    for who, share in (("web-a", 0.6), ("web-b", 0.3), ("web-c", 0.1)):
        assert within(counts[who], N, share), counts


async def test_weighted_across_two_services(harness: Harness) -> None:
    client, w, a = harness.ip(10), harness.ip(11), harness.ip(12)
    harness.backend("web", w, 8080)
    harness.backend("api", a, 9000)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        service("web", "shop", {"app": "web"}, (8080,)),
        service("api", "shop", {"app": "api"}, {80: 9000}),
        pod("web", "shop", w, {"app": "web"}, (8080,)),
        pod("api", "shop", a, {"app": "api"}, (9000,)),
        vs("web", "shop", ["web"], [{"route": [dest("web", weight=90), dest("api", weight=10)]}]),
    )
    await harness.start()
    counts = await harness.split(client, "http://web:8080/", N)
    assert set(counts) == {"web", "api"} and sum(counts.values()) == N, counts
    assert within(counts["api"], N, 0.10), counts


async def test_weighted_across_ports_of_one_service(harness: Harness) -> None:
    """Two ports of one (injected) pod: each destination port must reach its own app port."""
    client, ip = harness.ip(10), harness.ip(11)
    harness.backend("multi-8080", ip, 8080)
    harness.backend("multi-9090", ip, 9090)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        service("multi", "shop", {"app": "multi"}, (8080, 9090)),
        pod("multi", "shop", ip, {"app": "multi"}, (8080, 9090)),
        vs(
            "multi",
            "shop",
            ["multi"],
            [{"route": [dest("multi", port=8080, weight=50), dest("multi", port=9090, weight=50)]}],
        ),
    )
    await harness.start()
    # Without the VirtualService each port reaches its own app.
    assert (
        await harness.direct(f"{ip}:15006", "/", {"host": "multi:9090"})
    ).served_by == "multi-9090"
    counts = await harness.split(client, "http://multi:8080/", 400)
    assert sum(counts.values()) == 400, counts
    assert within(counts["multi-9090"], 400, 0.5), counts


# ---------------------------------------------------------------- redirect, rewrite, direct


async def test_redirect(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        *web(harness, "a"),
        vs(
            "web",
            "shop",
            ["web"],
            [
                {"match": [{"uri": {"prefix": "/r1"}}], "redirect": {"uri": "/new"}},
                {
                    "match": [{"uri": {"prefix": "/r2"}}],
                    "redirect": {"authority": "other.example", "redirectCode": 302},
                },
                {
                    "match": [{"uri": {"prefix": "/r3"}}],
                    "redirect": {
                        "uri": "/v2/login",
                        "authority": "login.shop:8080",
                        "redirectCode": 308,
                    },
                },
                {
                    "match": [{"uri": {"prefix": "/r4"}}],
                    "redirect": {"uri": "/x", "redirectCode": 307},
                },
                {  # the matched prefix replaced, the rest of the path kept
                    "match": [{"uri": {"prefix": "/r5/"}}],
                    "redirect": {"prefixRewrite": "/moved/"},
                },
                {"route": [dest("web")]},
            ],
        ),
    )
    await harness.start()
    expected = {
        "/r1/abc": (301, "http://web:8080/new"),
        "/r2/abc": (302, "http://other.example/r2/abc"),
        "/r3": (308, "http://login.shop:8080/v2/login"),
        "/r4/y": (307, "http://web:8080/x"),
        "/r5/a/b?q=1": (301, "http://web:8080/moved/a/b?q=1"),
    }
    for path, (status, location) in expected.items():
        r = await harness.get(client, f"http://web:8080{path}")
        assert (r.status, r.headers.get("location"), r.served_by) == (status, location, None), path
    assert (await harness.get(client, "http://web:8080/other")).served_by == "web-a"


async def test_rewrite(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        *web(harness, "a"),
        vs(
            "web",
            "shop",
            ["web"],
            [
                {
                    "match": [{"uri": {"prefix": "/old/"}}],
                    "rewrite": {"uri": "/new/"},
                    "route": [dest("web")],
                },
                {
                    "match": [{"uri": {"exact": "/exact"}}],
                    "rewrite": {"uri": "/replaced"},
                    "route": [dest("web")],
                },
                {
                    "match": [{"uri": {"prefix": "/host"}}],
                    "rewrite": {"authority": "internal.example"},
                    "route": [dest("web")],
                },
                {
                    "match": [{"uri": {"prefix": "/service/"}}],
                    "rewrite": {
                        "uriRegexRewrite": {
                            "match": "^/service/([^/]+)(/.*)$",
                            "rewrite": "\\2/instance/\\1",
                        }
                    },
                    "route": [dest("web")],
                },
                {"route": [dest("web")]},
            ],
        ),
    )
    await harness.start()

    async def seen(path: str) -> dict[str, Any]:
        r = await harness.get(client, f"http://web:8080{path}")
        assert r.status == 200, (path, r.status, r.body)
        return r.json  # type: ignore[no-any-return]

    assert (await seen("/old/a/b?q=1"))["path"] == "/new/a/b?q=1"
    assert (await seen("/exact"))["path"] == "/replaced"
    body = await seen("/host/x")
    assert (body["path"], body["headers"]["host"]) == ("/host/x", "internal.example")
    assert (await seen("/service/foo/bar/baz"))["path"] == "/bar/baz/instance/foo"
    untouched = await seen("/other")
    assert (untouched["path"], untouched["headers"]["host"]) == ("/other", "web:8080")


async def test_direct_response(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        *web(harness, "a"),
        vs(
            "web",
            "shop",
            ["web"],
            [
                {
                    "match": [{"uri": {"prefix": "/down"}}],
                    "directResponse": {"status": 503, "body": {"string": "down for maintenance"}},
                },
                {
                    "match": [{"uri": {"prefix": "/bytes"}}],
                    "directResponse": {"status": 200, "body": {"bytes": "aGVsbG8gYnl0ZXM="}},
                },
                {"match": [{"uri": {"prefix": "/teapot"}}], "directResponse": {"status": 418}},
                {"route": [dest("web")]},
            ],
        ),
    )
    await harness.start()
    r = await harness.get(client, "http://web:8080/down/x")
    assert (r.status, r.body, r.served_by) == (503, b"down for maintenance", None)
    r = await harness.get(client, "http://web:8080/bytes")
    assert (r.status, r.body, r.served_by) == (200, b"hello bytes", None)
    r = await harness.get(client, "http://web:8080/teapot")
    assert (r.status, r.body, r.served_by) == (418, b"", None)
    assert (await harness.get(client, "http://web:8080/up")).served_by == "web-a"


# ---------------------------------------------------------------- headers


OPS = {
    "request": {"set": {"x-req-a": "new"}, "add": {"x-req-b": "more"}, "remove": ["x-req-c"]},
    "response": {"set": {"x-app-a": "new"}, "add": {"x-app-b": "more"}, "remove": ["x-app-c"]},
}
SENT = [("x-req-a", "orig"), ("x-req-b", "orig"), ("x-req-c", "orig")]


def assert_ops_applied(status: int, response: list[tuple[str, str]], body: bytes) -> None:
    assert status == 200, body
    request = [tuple(x) for x in json.loads(body)]
    assert values(request, "x-req-a") == ["new"], request
    assert values(request, "x-req-b") == ["orig", "more"], request
    assert values(request, "x-req-c") == [], request
    assert values(response, "x-app-a") == ["new"], response
    assert values(response, "x-app-b") == ["app", "more"], response
    assert values(response, "x-app-c") == [], response


async def test_header_operations_at_route_level(harness: Harness) -> None:
    client, ip = harness.ip(10), harness.ip(11)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        service("web", "shop", {"app": "web"}, (8080,)),
        pod("web", "shop", ip, {"app": "web"}, (8080,)),
        vs(
            "web",
            "shop",
            ["web"],
            [
                {"match": [{"uri": {"prefix": "/ops"}}], "route": [dest("web")], "headers": OPS},
                {"route": [dest("web")]},
            ],
        ),
    )
    with raw_echo("web", ip, 8080):
        await harness.start()
        proxy = f"{client}:15001"
        assert_ops_applied(*await asyncio.to_thread(raw_get, proxy, "http://web:8080/ops", SENT))
        # Other routes are untouched.
        status, response, body = await asyncio.to_thread(
            raw_get, proxy, "http://web:8080/plain", SENT
        )
        assert status == 200, body
        assert [h for h in json.loads(body) if h[0].startswith("x-req-")] == [list(s) for s in SENT]
        assert [h for h in response if h[0].startswith("x-app")] == [
            ("x-app-a", "app"),
            ("x-app-b", "app"),
            ("x-app-c", "app"),
        ]


async def test_header_operations_per_destination(harness: Harness) -> None:
    client, ip = harness.ip(10), harness.ip(11)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        service("web", "shop", {"app": "web"}, (8080,)),
        pod("web", "shop", ip, {"app": "web"}, (8080,)),
        vs("web", "shop", ["web"], [{"route": [dest("web", headers=OPS)]}]),
    )
    with raw_echo("web", ip, 8080):
        await harness.start()
        assert_ops_applied(
            *await asyncio.to_thread(raw_get, f"{client}:15001", "http://web:8080/", SENT)
        )


async def test_each_weighted_destination_gets_its_own_headers(harness: Harness) -> None:
    client = harness.ip(10)

    def marked(subset: str) -> dict[str, Any]:
        ops = {"request": {"set": {"x-dest": subset}}, "response": {"set": {"x-picked": subset}}}
        return dest("web", subset, weight=50, headers=ops)

    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        *web(harness, "ab"),
        vs("web", "shop", ["web"], [{"route": [marked("a"), marked("b")]}]),
    )
    await harness.start()
    seen: Counter[str] = Counter()
    for _ in range(30):
        r = await harness.get(client, "http://web:8080/")
        who = r.served_by
        assert who in ("web-a", "web-b"), r
        v = who.removeprefix("web-")
        assert (r.json["headers"].get("x-dest"), r.headers.get("x-picked")) == (v, v), r
        seen[who] += 1
    assert set(seen) == {"web-a", "web-b"}, seen


# ---------------------------------------------------------------- hosts, namespaces, exportTo


@pytest.mark.parametrize("host", ["web", "web.shop", "web.shop.svc.cluster.local"])
async def test_hosts_forms(harness: Harness, host: str) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        namespace("shop"),
        pod("client", "shop", client, {"app": "client"}),
        *web(harness, "ab"),
        vs("web", "shop", [host], [tagged(dest("web", "b"))]),
    )
    await harness.start()
    for authority in ("web:8080", "web.shop:8080", "web.shop.svc.cluster.local:8080"):
        for _ in range(3):
            r = await harness.get(client, f"http://{authority}/")
            assert (r.served_by, r.json["headers"].get(TAG)) == ("web-b", "vs"), authority


@pytest.mark.parametrize("host", ["web.shop", "web.shop.svc.cluster.local"])
async def test_virtualservice_in_another_namespace(harness: Harness, host: str) -> None:
    here, there = harness.ip(10), harness.ip(20)
    harness.write(
        "base.yaml",
        namespace("shop"),
        namespace("routing"),
        namespace("other"),
        pod("client", "shop", here, {"app": "client"}),
        pod("client", "other", there, {"app": "client"}),
        *web(harness, "ab"),
        vs("web-routes", "routing", [host], [tagged(dest(host, "b"))]),
    )
    await harness.start()
    for client, authority in ((here, "web:8080"), (there, "web.shop:8080")):
        for _ in range(3):
            r = await harness.get(client, f"http://{authority}/")
            assert (r.served_by, r.json["headers"].get(TAG)) == ("web-b", "vs"), client


@pytest.mark.parametrize(
    ("export_to", "routed_here", "routed_there"),
    [([], True, True), (["*"], True, True), (["."], True, False), (["other"], False, True)],
)
async def test_virtualservice_export_to(
    harness: Harness, export_to: list[str], routed_here: bool, routed_there: bool
) -> None:
    """Where the VirtualService is not exported, clients get the service's default
    routing (every endpoint, no VS headers) — not a 404."""
    here, there = harness.ip(10), harness.ip(20)
    spec = {"exportTo": export_to} if export_to else {}
    harness.write(
        "base.yaml",
        namespace("shop"),
        namespace("other"),
        pod("client", "shop", here, {"app": "client"}),
        pod("client", "other", there, {"app": "client"}),
        *web(harness, "ab"),
        vs("web", "shop", ["web"], [tagged(dest("web", "b"))], **spec),
    )
    await harness.start()
    for client, routed in ((here, routed_here), (there, routed_there)):
        who: Counter[str] = Counter()
        for _ in range(10):
            r = await harness.get(client, "http://web.shop:8080/")
            assert r.status == 200, (client, r.status, r.body)
            assert r.json["headers"].get(TAG) == ("vs" if routed else None), client
            who[r.served_by or ""] += 1
        assert set(who) == ({"web-b"} if routed else {"web-a", "web-b"}), (client, who)


async def test_export_to_dot_means_the_virtualservice_namespace(harness: Harness) -> None:
    """`.` is the VirtualService's own namespace, even when it routes another
    namespace's service: clients there get its routing, the service's own
    namespace gets default routing."""
    owner, svc_ns = harness.ip(10), harness.ip(20)
    harness.write(
        "base.yaml",
        namespace("shop"),
        namespace("routing"),
        pod("client", "routing", owner, {"app": "client"}),
        pod("client", "shop", svc_ns, {"app": "client"}),
        *web(harness, "ab"),
        vs("web", "routing", ["web.shop"], [tagged(dest("web.shop", "b"))], exportTo=["."]),
    )
    await harness.start()
    for client, routed in ((owner, True), (svc_ns, False)):
        who: Counter[str] = Counter()
        for _ in range(10):
            r = await harness.get(client, "http://web.shop:8080/")
            assert r.status == 200, (client, r.status, r.body)
            assert r.json["headers"].get(TAG) == ("vs" if routed else None), client
            who[r.served_by or ""] += 1
        assert set(who) == ({"web-b"} if routed else {"web-a", "web-b"}), (client, who)

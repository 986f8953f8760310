"""DestinationRule load balancing through real Envoy: how requests spread over
endpoints, as a client observes it."""

from __future__ import annotations

import asyncio
import http.client
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from harness import Harness, Response, istio, namespace, pod, service

pytestmark = pytest.mark.envoy

NAMES = ("web-0", "web-1", "web-2")


def within(count: int, n: int, share: float) -> bool:
    """Within 5 binomial standard deviations of the expected count."""
    return abs(count - n * share) <= 5 * math.sqrt(n * share * (1 - share))


def topology(
    h: Harness,
    ports: dict[int, int] | tuple[int, ...] = (8080,),
    delays: tuple[float, ...] = (0, 0, 0),
) -> list[dict[str, Any]]:
    """Service web in shop with one pod per delay (web-0, web-1, …), and a client."""
    objs: list[dict[str, Any]] = [
        namespace("shop"),
        service("web", "shop", {"app": "web"}, ports),
        pod("client", "shop", h.ip(10), {"app": "client"}),
    ]
    for i, delay in enumerate(delays):
        ip = h.ip(20 + i)
        h.backend(f"web-{i}", ip, 8080, delay=delay)
        objs.append(pod(f"web-{i}", "shop", ip, {"app": "web", "idx": str(i)}, (8080,)))
    return objs


def rule(spec: dict[str, Any]) -> dict[str, Any]:
    return istio("DestinationRule", "web", "shop", {"host": "web", **spec})


def lb(**settings: Any) -> dict[str, Any]:
    return {"trafficPolicy": {"loadBalancer": settings}}


def request(
    client: str, url: str, headers: dict[str, str] | None = None, source: str | None = None
) -> Response:
    """One request on a fresh connection, optionally from a given source address."""
    host, port = f"{client}:15001".rsplit(":", 1)
    conn = http.client.HTTPConnection(
        host, int(port), timeout=10, source_address=(source, 0) if source else None
    )
    try:
        conn.request("GET", url, headers={"host": url.split("/")[2], **(headers or {})})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def sequence(client: str, url: str, n: int) -> list[str]:
    """n requests on one keep-alive connection; who answered each, in order."""
    conn = http.client.HTTPConnection(client, 15001, timeout=10)
    out = []
    try:
        for _ in range(n):
            conn.request("GET", url, headers={"host": url.split("/")[2]})
            r = conn.getresponse()
            r.read()
            out.append(r.getheader("x-served-by") or f"status {r.status}")
    finally:
        conn.close()
    return out


async def who(
    client: str, url: str, headers: dict[str, str] | None = None, source: str | None = None
) -> str:
    r = await asyncio.to_thread(request, client, url, headers, source)
    assert r.status == 200 and r.served_by, (r.status, r.body)
    return r.served_by


# ---------------------------------------------------------------- simple


async def test_round_robin_rotates_over_every_endpoint(harness: Harness) -> None:
    harness.write("base.yaml", *topology(harness), rule(lb(simple="ROUND_ROBIN")))
    await harness.start()
    # One keep-alive connection: one Envoy worker, one strict rotation.
    seq = await asyncio.to_thread(sequence, harness.ip(10), "http://web:8080/", 300)
    assert sorted(Counter(seq)) == list(NAMES), Counter(seq)
    assert all(seq[i] == seq[i + 3] and seq[i] != seq[i + 1] for i in range(len(seq) - 3)), seq


async def test_random_uses_every_endpoint_without_rotation(harness: Harness) -> None:
    harness.write("base.yaml", *topology(harness), rule(lb(simple="RANDOM")))
    await harness.start()
    n = 600
    seq = await asyncio.to_thread(sequence, harness.ip(10), "http://web:8080/", n)
    counts = Counter(seq)
    assert sorted(counts) == list(NAMES), counts
    assert all(within(c, n, 1 / 3) for c in counts.values()), counts
    # Not the rotation round robin gives (for random picks: P = 3^-597).
    assert any(seq[i] != seq[i + 3] for i in range(n - 3)), seq[:30]


async def test_least_request_avoids_a_slow_endpoint(harness: Harness) -> None:
    """One of four endpoints 40x slower than the others, 8 concurrent clients. Round
    robin still gives it a quarter of the requests; least-request (power of two
    choices, drawn with replacement: it picks the slow one for sure only when drawn
    twice, 1/16) gives it clearly fewer. Two services over the same pods, one policy
    each, measured alike."""
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        *topology(harness, delays=(0.005, 0.005, 0.005, 0.2)),
        service("web-rr", "shop", {"app": "web"}, (8080,)),
        service("web-lr", "shop", {"app": "web"}, (8080,)),
        istio("DestinationRule", "rr", "shop", {"host": "web-rr", **lb(simple="ROUND_ROBIN")}),
        istio("DestinationRule", "lr", "shop", {"host": "web-lr", **lb(simple="LEAST_REQUEST")}),
    )
    await harness.start()
    per_worker, workers = 24, 8
    n = per_worker * workers

    async def slow_share(url: str) -> float:
        def worker() -> Counter[str]:
            out: Counter[str] = Counter()
            for _ in range(per_worker):
                r = request(client, url)
                out[r.served_by or f"status {r.status}"] += 1
            return out

        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(workers) as pool:
            parts = await asyncio.gather(
                *(loop.run_in_executor(pool, worker) for _ in range(workers))
            )
        total = sum(parts, Counter())
        assert sum(total.values()) == n and sorted(total) == [f"web-{i}" for i in range(4)], total
        return total["web-3"] / n

    rr = await slow_share("http://web-rr:8080/")
    least = await slow_share("http://web-lr:8080/")
    assert abs(rr - 1 / 4) < 0.05, rr  # round robin ignores load
    assert least < 0.165, (least, rr)  # measured 0.06-0.10 over repeated runs


# ---------------------------------------------------------------- consistent hash

HASH_VARIANTS = {
    "default": {},
    "ring-hash": {"ringHash": {"minimumRingSize": 1024}},
    "maglev": {"maglev": {"tableSize": 65537}},
}


@pytest.mark.parametrize("variant", sorted(HASH_VARIANTS))
async def test_consistent_hash_on_header(harness: Harness, variant: str) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        *topology(harness),
        rule(lb(consistentHash={"httpHeaderName": "x-user", **HASH_VARIANTS[variant]})),
    )
    await harness.start()
    chosen = {}
    for user in (f"user-{i}" for i in range(12)):
        picks = {await who(client, "http://web:8080/", {"x-user": user}) for _ in range(6)}
        assert len(picks) == 1, (user, picks)
        chosen[user] = picks.pop()
    assert len(set(chosen.values())) >= 2, chosen


async def test_consistent_hash_on_cookie_with_ttl(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        *topology(harness),
        rule(lb(consistentHash={"httpCookie": {"name": "session", "ttl": "60s", "path": "/"}})),
    )
    await harness.start()
    cookies: dict[str, str] = {}
    for _ in range(8):
        first = await asyncio.to_thread(request, client, "http://web:8080/")
        assert first.status == 200, first
        set_cookie = first.headers.get("set-cookie", "")
        assert set_cookie.startswith("session="), first.headers
        assert "Max-Age=60" in set_cookie and "Path=/" in set_cookie, set_cookie
        cookie = set_cookie.split(";", 1)[0]
        picks = {await who(client, "http://web:8080/", {"cookie": cookie}) for _ in range(6)}
        assert len(picks) == 1, (cookie, picks)
        cookies[cookie] = picks.pop()
        # A request that carries the cookie gets no new one.
        again = await asyncio.to_thread(request, client, "http://web:8080/", {"cookie": cookie})
        assert "set-cookie" not in again.headers, again.headers
    assert len(cookies) == 8, cookies  # each cookie-less request got a fresh cookie


async def test_consistent_hash_on_query_parameter(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml", *topology(harness), rule(lb(consistentHash={"httpQueryParameterName": "user"}))
    )
    await harness.start()
    chosen = {}
    for user in (f"u{i}" for i in range(12)):
        picks = {await who(client, f"http://web:8080/p?x=1&user={user}") for _ in range(6)}
        assert len(picks) == 1, (user, picks)
        chosen[user] = picks.pop()
    assert len(set(chosen.values())) >= 2, chosen


async def test_consistent_hash_on_source_ip(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write("base.yaml", *topology(harness), rule(lb(consistentHash={"useSourceIp": True})))
    await harness.start()
    chosen = {}
    for source in (harness.ip(100 + i) for i in range(12)):
        picks = {await who(client, "http://web:8080/", source=source) for _ in range(6)}
        assert len(picks) == 1, (source, picks)
        chosen[source] = picks.pop()
    assert len(set(chosen.values())) >= 2, chosen


# ---------------------------------------------------------------- scoping


async def test_port_level_settings_apply_to_their_port_only(harness: Harness) -> None:
    client = harness.ip(10)
    harness.write(
        "base.yaml",
        *topology(harness, ports={8080: 8080, 9090: 8080}),
        rule(
            {
                "trafficPolicy": {
                    "loadBalancer": {"simple": "ROUND_ROBIN"},
                    "portLevelSettings": [
                        {
                            "port": {"number": 9090},
                            "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}},
                        }
                    ],
                }
            }
        ),
    )
    await harness.start()
    headers = {"x-user": "alice"}
    sticky = {await who(client, "http://web:9090/", headers) for _ in range(12)}
    assert len(sticky) == 1, sticky
    spread = Counter([await who(client, "http://web:8080/", headers) for _ in range(12)])
    assert sorted(spread) == list(NAMES), spread


async def test_subset_policy_overrides_the_rule_policy(harness: Harness) -> None:
    """The rule hashes on x-user; subset `rr` overrides that with round robin, subset
    `hashed` inherits it. Both subsets hold every endpoint."""
    client = harness.ip(10)
    everyone = {"app": "web"}
    harness.write(
        "base.yaml",
        *topology(harness),
        rule(
            {
                **lb(consistentHash={"httpHeaderName": "x-user"}),
                "subsets": [
                    {"name": "hashed", "labels": everyone},
                    {
                        "name": "rr",
                        "labels": everyone,
                        "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
                    },
                ],
            }
        ),
        istio(
            "VirtualService",
            "web",
            "shop",
            {
                "hosts": ["web"],
                "http": [
                    {
                        "match": [{"uri": {"prefix": "/rr"}}],
                        "route": [{"destination": {"host": "web", "subset": "rr"}}],
                    },
                    {"route": [{"destination": {"host": "web", "subset": "hashed"}}]},
                ],
            },
        ),
    )
    await harness.start()
    headers = {"x-user": "alice"}
    sticky = {await who(client, "http://web:8080/h", headers) for _ in range(12)}
    assert len(sticky) == 1, sticky
    spread = Counter([await who(client, "http://web:8080/rr", headers) for _ in range(12)])
    assert sorted(spread) == list(NAMES), spread


async def test_destination_rule_edit_takes_effect_promptly(harness: Harness) -> None:
    """Changing a cluster's policy makes Envoy re-warm the cluster, which needs its
    endpoints again: the edit must be in force within seconds, not after Envoy's
    15 s initial-fetch timeout."""
    client = harness.ip(10)
    harness.write("base.yaml", *topology(harness))
    harness.write("dr.yaml", rule(lb(simple="ROUND_ROBIN")))
    await harness.start()
    assert len({await who(client, "http://web:8080/", {"x-user": "a"}) for _ in range(6)}) > 1
    t0 = time.monotonic()
    await harness.apply("dr.yaml", rule(lb(consistentHash={"httpHeaderName": "x-user"})))
    took = time.monotonic() - t0
    picks = {await who(client, "http://web:8080/", {"x-user": "a"}) for _ in range(6)}
    assert len(picks) == 1, picks
    assert took < 5, f"the DestinationRule edit took {took:.1f}s to reach every sidecar"

"""The chart's Grafana dashboards, and the queries Kiali's graph makes, against a real
Prometheus (Debian's) scraping a local mesh's sidecars and control plane with the
chart's scrape configuration, after traffic whose every count is known.

Every query of every panel runs as Grafana would send it (its variables filled in with
values the dashboard's own variable queries offer) and must show a number; the key
panels must show exactly the known counts. Exact values come from the panel's own
query with `rate(x[$__rate_interval])` read as the counter `x` (the total since the
sidecar started: a rate is only ever approximately known), latencies within the
histogram bucket the backend's known delay puts them in.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import Harness, istio, namespace, pod, service
from promserver import Prometheus, Series, prometheus, value

pytestmark = pytest.mark.envoy

BOARDS = Path(__file__).resolve().parents[2] / "charts" / "pilotfish" / "dashboards"
GRAFANA = {"__rate_interval": "2m", "__interval": "15s", "__range": "10m"}
NS = "shop"
PRODUCTPAGE = "productpage.shop.svc.cluster.local"
REVIEWS = "reviews.shop.svc.cluster.local"
DB = "db.shop.svc.cluster.local"
REVIEWS_V2_DELAY = 0.3  # seconds: Envoy's duration bucket (250, 500] ms

Panel = dict[str, Any]


def board(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((BOARDS / f"{name}.json").read_text())
    return loaded


def panel(dashboard: dict[str, Any], title: str) -> Panel:
    (found,) = [p for p in dashboard["panels"] if p["title"] == title]
    return found


def fill(expr: str, variables: dict[str, str]) -> str:
    """Grafana's interpolation: $name and ${name}, its own $__ variables included."""
    values = GRAFANA | variables
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m[1] or m[2]], expr)


def counters(expr: str) -> str:
    """The panel's query over the counters themselves: totals, exactly known."""
    return re.sub(r"\brate\(([^\[\]]*)\[[^\]]*\]\)", r"\1", expr)


def shown(found: Series, target: dict[str, Any]) -> dict[str, float]:
    """What Grafana shows of a result: each series under its legend (a table's row
    under its labels), with its value."""
    out: dict[str, float] = {}
    for s in found:
        labels = s["metric"]
        if target.get("format") == "table" or target.get("legendFormat") in (None, "__auto"):
            key = " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        else:
            key = re.sub(
                r"\{\{(\w+)\}\}", lambda m, got=labels: got.get(m[1], ""), target["legendFormat"]
            )
        out[key] = float(s["value"][1])
    return out


def label_values(prom: Prometheus, definition: str, variables: dict[str, str]) -> set[str]:
    """A `label_values(selector, label)` variable, as Grafana asks Prometheus for it."""
    m = re.fullmatch(r"label_values\((.*), (\w+)\)", fill(definition, variables))
    assert m, definition
    url = f"{prom.url}/api/v1/label/{m[2]}/values?" + urllib.parse.urlencode({"match[]": m[1]})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return set(body["data"])


async def view(
    prom: Prometheus, dashboard: dict[str, Any], title: str, ref: str = "A", **variables: str
) -> dict[str, float]:
    """One panel target's query over the counters, as Grafana would show its result."""
    (target,) = [t for t in panel(dashboard, title)["targets"] if t["refId"] == ref]
    found = await asyncio.to_thread(prom.query, fill(counters(target["expr"]), variables))
    return shown(found, target)


def topology(h: Harness) -> list[dict[str, Any]]:
    gateway, productpage, v1, v2, db = (h.ip(n) for n in (10, 11, 12, 13, 14))
    return [
        namespace(NS),
        service("productpage", NS, {"app": "productpage"}, (9080,)),
        service("reviews", NS, {"app": "reviews"}, (9080,)),
        service("db", NS, {"app": "db"}, (5432,), protocol="tcp"),
        pod("gateway", NS, gateway, {"app": "gateway", "version": "v1"}),
        pod("productpage-v1", NS, productpage, {"app": "productpage", "version": "v1"}, (9080,)),
        pod("reviews-v1", NS, v1, {"app": "reviews", "version": "v1"}, (9080,)),
        pod("reviews-v2", NS, v2, {"app": "reviews", "version": "v2"}, (9080,)),
        pod("db-v1", NS, db, {"app": "db", "version": "v1"}, (5432,)),
        istio(
            "DestinationRule",
            "reviews",
            NS,
            {
                "host": "reviews",
                "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")],
            },
        ),
        # Refused by validation (a negative weight): the control plane counts it.
        istio(
            "VirtualService",
            "broken",
            NS,
            {
                "hosts": ["productpage"],
                "http": [{"route": [{"destination": {"host": "productpage"}, "weight": -1}]}],
            },
        ),
    ]


# The canary: requests with `x-canary: true` go to v2, every other one to v1.
CANARY = istio(
    "VirtualService",
    "reviews",
    NS,
    {
        "hosts": ["reviews"],
        "http": [
            {
                "match": [{"headers": {"x-canary": {"exact": "true"}}}],
                "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
            },
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
        ],
    },
)


async def traffic(h: Harness) -> None:
    """One round of the known traffic. reviews-v1 answers 200, 200, 200, 404 in turn;
    reviews-v2 answers 200, 500 in turn, each after 0.3 s; every group below is a
    multiple of its backend's cycle, so every round counts the same."""
    gateway, productpage = h.ip(10), h.ip(11)
    canary = {"x-canary": "true"}
    assert await h.split(gateway, "http://productpage.shop:9080/", 10) == {"productpage-v1": 10}
    sent = await h.split(productpage, "http://reviews.shop:9080/", 20)
    assert sent == {"reviews-v1": 20}
    assert await h.split(gateway, "http://reviews.shop:9080/", 10, canary) == {"reviews-v2": 10}
    assert await h.split(productpage, "http://reviews:9080/", 4, canary) == {"reviews-v2": 4}
    for _ in range(2):  # productpage's sidecar, on the db service's port
        reader, writer = await asyncio.wait_for(asyncio.open_connection(productpage, 5432), 10)
        assert (await asyncio.wait_for(reader.readline(), 10)).strip() == b"db-v1"
        writer.write(b"ping\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 10) == b"ping\n"
        writer.close()
        await writer.wait_closed()


async def seen(prom: Prometheus, rounds: int) -> None:
    """Wait until Prometheus has scraped every count of `rounds` rounds, histograms
    (flushed by Envoy every 5 s) and TCP closes included."""
    for reporter in ("source", "destination"):
        sel = f'reporter="{reporter}"'
        for query, want in (
            (f"sum(istio_requests_total{{{sel}}})", 44),
            (f"sum(istio_request_duration_milliseconds_count{{{sel}}})", 44),
            (f"sum(istio_tcp_connections_closed_total{{{sel}}})", 2),
            (f"sum(istio_tcp_sent_bytes_total{{{sel}}})", 22),
        ):
            found = await prom.eventually(query, lambda f, w=want: value(f) >= w * rounds)
            assert value(found) == want * rounds, query


async def nack(h: Harness, proxy: str) -> None:
    """Config the proxy's Envoy rejects (as a translation bug would produce): it keeps
    its last good config; then the good one again."""
    good = await h.send_rejected_routes(proxy)
    assert h.mesh is not None
    h.mesh.cache.set(proxy, good)
    await h.synced()


def numbers(found: Series) -> list[float]:
    return [float(s["value"][1]) for s in found]


async def test_every_dashboard_panel_and_kialis_graph_show_the_known_traffic(
    harness: Harness, tmp_path: Path
) -> None:
    harness.backend("productpage-v1", harness.ip(11), 9080)
    harness.backend("reviews-v1", harness.ip(12), 9080, pattern=(200, 200, 200, 404))
    harness.backend("reviews-v2", harness.ip(13), 9080, REVIEWS_V2_DELAY, pattern=(200, 500))
    harness.backend("db-v1", harness.ip(14), 5432, tcp=True)
    harness.write("mesh.yaml", *topology(harness))
    await harness.start()
    assert harness.mesh is not None and harness.mesh.monitoring
    sidecars = [f"{harness.ip(n)}:15000" for n in (10, 11, 12, 13, 14)]

    with prometheus(tmp_path, sidecars, [harness.mesh.monitoring]) as prom:
        await prom.eventually("count(up == 1)", lambda f: value(f) == 6)
        # Config changes while Prometheus watches: pushes, rebuilds, convergence.
        await harness.apply("canary.yaml", CANARY)
        # Two rounds: the first makes the series, the second moves them while
        # Prometheus watches (a rate needs two samples that differ).
        await traffic(harness)
        await seen(prom, 1)
        await nack(harness, "gateway.shop")
        await prom.eventually("sum(pilot_total_xds_rejects)", lambda f: value(f) == 1)
        await traffic(harness)
        await seen(prom, 2)
        await nack(harness, "gateway.shop")
        await prom.eventually("sum(pilot_total_xds_rejects)", lambda f: value(f) == 2)
        await check_every_panel_shows_data(prom)
        await check_mesh_dashboard(prom)
        await check_service_dashboard(prom)
        await check_workload_dashboard(prom)
        await check_control_plane_dashboard(prom)
        await check_kiali_graph(prom)


# The values the test picks for each dashboard's variables; every target must show
# data under at least one of them (an HTTP panel with an HTTP service, a TCP panel
# with the TCP service), for each reporter.
CHOICES: dict[str, list[dict[str, str]]] = {
    "mesh": [{}],
    "service": [{"namespace": NS, "service": "reviews"}, {"namespace": NS, "service": "db"}],
    "workload": [
        {"namespace": NS, "workload": "productpage-v1"},
        {"namespace": NS, "workload": "db-v1"},
    ],
    "control-plane": [{}],
}


OFFERED = {
    "namespace": {NS},
    "service": {"productpage", "reviews", "db"},
    "workload": {"productpage-v1", "reviews-v1", "reviews-v2", "db-v1"},
}


async def check_every_panel_shows_data(prom: Prometheus) -> None:
    assert sorted(p.stem for p in BOARDS.glob("*.json")) == sorted(CHOICES)
    for name, choices in CHOICES.items():
        dashboard = board(name)
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        reporters = [o["value"] for o in variables.get("reporter", {}).get("options", [])]
        # The variable queries offer exactly the mesh's namespace, services, workloads.
        for choice in choices:
            for var in choice:
                offered = label_values(prom, variables[var]["definition"], choice)
                assert offered == OFFERED[var], (name, var, offered)
        for p in dashboard["panels"]:
            for target in p.get("targets", []):
                for reporter in reporters or [""]:
                    results = []
                    for choice in choices:
                        expr = fill(target["expr"], {"reporter": reporter, **choice})
                        results.append(await asyncio.to_thread(prom.query, expr))
                    with_data = [r for r in results if r]
                    where = f"{name} / {p['title']} / {target['refId']} ({reporter})"
                    assert with_data, f"{where}: no data: {target['expr']}"
                    values = [v for r in with_data for v in numbers(r)]
                    assert all(math.isfinite(v) for v in values), f"{where}: {with_data}"
                    assert max(values) > 0, f"{where}: {with_data}"


async def check_mesh_dashboard(prom: Prometheus) -> None:
    mesh = board("mesh")
    for reporter in ("destination", "source"):  # every client and server is meshed
        at = {"reporter": reporter}
        assert await view(prom, mesh, "Request volume", **at) == {"": 88}
        assert await view(prom, mesh, "Success rate (non-5xx)", **at) == {"": 74 / 88}
        assert await view(prom, mesh, "4xx responses", **at) == {"": 10}
        assert await view(prom, mesh, "5xx responses", **at) == {"": 14}
        assert await view(prom, mesh, "Requests by service and response code", **at) == {
            f"{PRODUCTPAGE} 200": 20,
            f"{REVIEWS} 200": 44,
            f"{REVIEWS} 404": 10,
            f"{REVIEWS} 500": 14,
        }
        workloads = "HTTP and gRPC workloads"
        assert await view(prom, mesh, workloads, "A", **at) == {
            "destination_workload=productpage-v1 destination_workload_namespace=shop": 20,
            "destination_workload=reviews-v1 destination_workload_namespace=shop": 40,
            "destination_workload=reviews-v2 destination_workload_namespace=shop": 28,
        }
        assert await view(prom, mesh, workloads, "E", **at) == {
            "destination_workload=productpage-v1 destination_workload_namespace=shop": 1.0,
            "destination_workload=reviews-v1 destination_workload_namespace=shop": 1.0,
            "destination_workload=reviews-v2 destination_workload_namespace=shop": 0.5,
        }
        slow = "destination_workload=reviews-v2 destination_workload_namespace=shop"
        fast = "destination_workload=reviews-v1 destination_workload_namespace=shop"
        for ref in ("B", "C", "D"):  # P50, P90, P99
            latencies = await view(prom, mesh, workloads, ref, **at)
            assert 250 < latencies[slow] <= 500, (ref, latencies)
        assert (await view(prom, mesh, workloads, "B", **at))[fast] < 250
        p99 = await view(prom, mesh, "P99 request duration by service", **at)
        assert 250 < p99[REVIEWS] <= 500, p99
        tcp = "TCP workloads"
        db = "destination_workload=db-v1 destination_workload_namespace=shop"
        assert [await view(prom, mesh, tcp, ref, **at) for ref in "ABCD"] == [
            {db: 4},  # connections opened
            {db: 4},  # closed
            {db: 4 * len(b"ping\n")},  # bytes received from the client
            {db: 4 * len(b"db-v1\nping\n")},  # bytes sent back
        ]
        assert await view(prom, mesh, "TCP bytes received by service", **at) == {DB: 20}
        assert await view(prom, mesh, "TCP bytes sent by service", **at) == {DB: 44}


async def check_service_dashboard(prom: Prometheus) -> None:
    svc = board("service")
    for reporter in ("destination", "source"):
        reviews = {"reporter": reporter, "namespace": NS, "service": "reviews"}
        assert await view(prom, svc, "Request volume", **reviews) == {"": 68}
        assert await view(prom, svc, "Success rate (non-5xx)", **reviews) == {"": 54 / 68}
        assert await view(
            prom, svc, "Incoming requests by client and response code", **reviews
        ) == {
            "productpage-v1.shop 200": 34,
            "productpage-v1.shop 404": 10,
            "productpage-v1.shop 500": 4,
            "gateway.shop 200": 10,
            "gateway.shop 500": 10,
        }
        assert await view(prom, svc, "Incoming success rate by client", **reviews) == {
            "productpage-v1.shop": 44 / 48,
            "gateway.shop": 0.5,
        }
        assert await view(
            prom, svc, "Served requests by workload and response code", **reviews
        ) == {
            "reviews-v1.shop v1 200": 30,
            "reviews-v1.shop v1 404": 10,
            "reviews-v2.shop v2 200": 14,
            "reviews-v2.shop v2 500": 14,
        }
        durations = await view(prom, svc, "Served request duration by workload", "B", **reviews)
        assert 250 < durations["P99 reviews-v2.shop v2"] <= 500, durations
        assert durations["P99 reviews-v1.shop v1"] < 250, durations
        db = {"reporter": reporter, "namespace": NS, "service": "db"}
        assert await view(prom, svc, "TCP connections opened", **db) == {"": 4}
        assert await view(prom, svc, "Served TCP bytes by workload", "A", **db) == {
            "received db-v1.shop v1": 20
        }
        assert await view(prom, svc, "Served TCP bytes by workload", "B", **db) == {
            "sent db-v1.shop v1": 44
        }
        # TCP as the clients' sidecars report it, whichever the reporter chosen.
        assert await view(prom, svc, "Incoming TCP bytes by client", "A", **db) == {
            "received productpage-v1.shop": 20
        }


async def check_workload_dashboard(prom: Prometheus) -> None:
    wl = board("workload")
    for reporter in ("destination", "source"):
        page = {"reporter": reporter, "namespace": NS, "workload": "productpage-v1"}
        assert await view(prom, wl, "Incoming request volume", **page) == {"": 20}
        assert await view(prom, wl, "Incoming success rate (non-5xx)", **page) == {"": 1.0}
        assert await view(prom, wl, "Incoming requests by client and response code", **page) == {
            "gateway.shop 200": 20
        }
        # What productpage calls: always its own sidecar's view.
        assert await view(prom, wl, "Outgoing request volume", **page) == {"": 48}
        assert await view(prom, wl, "Outgoing requests by service and response code", **page) == {
            f"{REVIEWS} 200": 34,
            f"{REVIEWS} 404": 10,
            f"{REVIEWS} 500": 4,
        }
        assert await view(prom, wl, "Outgoing success rate by service", **page) == {
            REVIEWS: 44 / 48
        }
        assert await view(prom, wl, "Outgoing TCP bytes by service", "A", **page) == {
            f"received {DB}": 20
        }
        assert await view(prom, wl, "TCP traffic", "C", **page) == {"sent (outgoing)": 20}
        assert await view(prom, wl, "TCP traffic", "D", **page) == {"received (outgoing)": 44}
        slow = {"reporter": reporter, "namespace": NS, "workload": "reviews-v2"}
        p99 = await view(prom, wl, "Incoming P99 request duration", **slow)
        assert 250 < p99[""] <= 500, p99
        db = {"reporter": reporter, "namespace": NS, "workload": "db-v1"}
        assert await view(prom, wl, "TCP traffic", "A", **db) == {"received (incoming)": 20}
        assert await view(prom, wl, "TCP traffic", "B", **db) == {"sent (incoming)": 44}


async def check_control_plane_dashboard(prom: Prometheus) -> None:
    cp = board("control-plane")
    assert await view(prom, cp, "Connected proxies") == {"": 5}
    assert await view(prom, cp, "Services") == {"": 3}
    assert await view(prom, cp, "VirtualServices") == {"": 1}
    assert await view(prom, cp, "Invalid config objects") == {"": 1}
    assert await view(prom, cp, "Invalid config objects by kind") == {"VirtualService": 1}
    assert await view(prom, cp, "xDS rejections by type") == {"rds": 2}
    pushes = await view(prom, cp, "xDS pushes by type")
    assert {"cds", "eds", "lds", "rds", "sds"} <= set(pushes), pushes
    convergence = await view(prom, cp, "Proxy convergence time", "C")
    assert 0 < convergence["P99"] <= 30, convergence


# Kiali's graph of a namespace (kiali/graph/telemetry/istio/istio.go): requests from
# outside the mesh (unknown), from other namespaces, from inside the namespace; the
# same three for TCP bytes. Grouped by the labels Kiali reads.
HTTP_BY = (
    "source_workload_namespace,source_workload,source_canonical_service,"
    "source_canonical_revision,destination_service_namespace,destination_service,"
    "destination_service_name,destination_workload_namespace,destination_workload,"
    "destination_canonical_service,destination_canonical_revision,request_protocol,"
    "response_code,grpc_response_status,response_flags"
)
TCP_BY = (
    "source_workload_namespace,source_workload,source_canonical_service,"
    "source_canonical_revision,destination_service_namespace,destination_service,"
    "destination_service_name,destination_workload_namespace,destination_workload,"
    "destination_canonical_service,destination_canonical_revision,response_flags"
)


def kiali(metric: str, by: str) -> list[str]:
    return [
        f'sum(rate({metric}{{reporter="destination",source_workload="unknown",'
        f'destination_workload_namespace="{NS}"}}[60s])) by ({by})',
        f'sum(rate({metric}{{reporter="source",source_workload_namespace!="{NS}",'
        f'source_workload!="unknown",destination_service_namespace="{NS}"}}[60s])) by ({by})',
        f'sum(rate({metric}{{reporter="source",source_workload_namespace="{NS}"}}[60s])) by ({by})',
    ]


def workload(name: str, version: str) -> dict[str, str]:
    app = name.split("-")[0]
    return {
        "workload_namespace": NS,
        "workload": name,
        "canonical_service": app,
        "canonical_revision": version,
    }


def edge(src: dict[str, str], dst: dict[str, str], svc: str, **rest: str) -> dict[str, str]:
    return {
        **{f"source_{k}": v for k, v in src.items()},
        **{f"destination_{k}": v for k, v in dst.items()},
        "destination_service_namespace": NS,
        "destination_service": f"{svc}.{NS}.svc.cluster.local",
        "destination_service_name": svc,
        "response_flags": "-",
        **rest,
    }


def edge_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def check_kiali_graph(prom: Prometheus) -> None:
    gateway, page = workload("gateway", "v1"), workload("productpage-v1", "v1")
    v1, v2, db = workload("reviews-v1", "v1"), workload("reviews-v2", "v2"), workload("db-v1", "v1")
    http = {"request_protocol": "http"}
    expected_http = [
        (edge(gateway, page, "productpage", **http, response_code="200"), 20),
        (edge(page, v1, "reviews", **http, response_code="200"), 30),
        (edge(page, v1, "reviews", **http, response_code="404"), 10),
        (edge(gateway, v2, "reviews", **http, response_code="200"), 10),
        (edge(gateway, v2, "reviews", **http, response_code="500"), 10),
        (edge(page, v2, "reviews", **http, response_code="200"), 4),
        (edge(page, v2, "reviews", **http, response_code="500"), 4),
    ]
    unknown = {
        "workload_namespace": "unknown",
        "workload": "unknown",
        "canonical_service": "unknown",
        "canonical_revision": "unknown",
    }
    sent = 4 * len(b"db-v1\nping\n")
    expected = {
        "istio_requests_total": [[], [], expected_http],
        # The db's sidecar knows its TCP client by certificate only (no metadata on
        # TCP): Kiali's query for traffic from outside the mesh finds it too.
        "istio_tcp_sent_bytes_total": [
            [(edge(unknown, db, "db"), sent)],
            [],
            [(edge(page, db, "db"), sent)],
        ],
    }
    for metric, by in (("istio_requests_total", HTTP_BY), ("istio_tcp_sent_bytes_total", TCP_BY)):
        for query, want in zip(kiali(metric, by), expected[metric], strict=True):
            rated = await asyncio.to_thread(prom.query, query)
            totals = await asyncio.to_thread(prom.query, counters(query))
            got = {edge_key(s["metric"]): float(s["value"][1]) for s in totals}
            assert got == {edge_key(m): v for m, v in want}, query
            # Kiali reads rates: the same edges, each moving.
            assert {edge_key(s["metric"]) for s in rated} == set(got), query
            assert all(v > 0 for v in numbers(rated)), rated

    # Its edges' response time (P95, the graph's default) and security (mTLS padlock).
    edges = HTTP_BY.split(",request_protocol")[0]
    p95 = await asyncio.to_thread(
        prom.query,
        "histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket"
        f'{{reporter="source",source_workload_namespace="{NS}"}}[60s])) by (le,{edges}))',
    )
    times = {
        (s["metric"]["source_workload"], s["metric"]["destination_workload"]): float(s["value"][1])
        for s in p95
    }
    assert set(times) == {
        ("gateway", "productpage-v1"),
        ("productpage-v1", "reviews-v1"),
        ("gateway", "reviews-v2"),
        ("productpage-v1", "reviews-v2"),
    }, times
    for (_, dest), ms in times.items():
        assert (250 < ms <= 500) if dest == "reviews-v2" else ms < 250, times
    security = await asyncio.to_thread(
        prom.query,
        'sum(rate(istio_requests_total{reporter="destination",'
        f'destination_workload_namespace="{NS}"}}[60s])) by ({edges},connection_security_policy)',
    )
    assert len(security) == 4, security  # one per edge above
    assert {s["metric"]["connection_security_policy"] for s in security} == {"mutual_tls"}

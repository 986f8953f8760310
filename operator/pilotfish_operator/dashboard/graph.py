"""The service graph and the per-service view, as JSON for the page, from a window of
Istio's metrics.

As Kiali builds its graph: a caller's edge to a service is what the caller's sidecar
reported (reporter=source: the client's view of rate, errors and latency), plus what
servers saw from callers without a sidecar (reporter=destination,
source_workload=unknown: nobody else reports them). Whether an edge is mutual TLS
only the server's sidecar knows, so that comes from its reports. A service's edges to
its workloads split the same traffic by the workload (and version) that answered: a
canary's shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..meshstats import Stats, Window

UNKNOWN = "unknown"
CALLER = (
    "source_workload_namespace",
    "source_workload",
    "destination_service_namespace",
    "destination_service_name",
    "destination_service",
)
BACKEND = (
    "destination_service_namespace",
    "destination_service_name",
    "destination_service",
    "destination_workload_namespace",
    "destination_workload",
    "destination_version",
)


def _service_id(ns: str, name: str, host: str) -> str:
    # Traffic to a host outside the mesh's services has no name and namespace.
    return f"service:{ns}/{name}" if UNKNOWN not in (ns, name) else f"service:{host}"


def _workload_id(ns: str, name: str) -> str:
    return UNKNOWN if name == UNKNOWN else f"workload:{ns}/{name}"


def _merge(*groups: dict[tuple[str, ...], Stats]) -> dict[tuple[str, ...], Stats]:
    out: dict[tuple[str, ...], Stats] = {}
    for group in groups:
        for key, stats in group.items():
            out[key] = out[key].add(stats) if key in out else stats
    return out


def _mtls(server_side: Stats | None) -> bool | None:
    """True when every request the server's sidecar saw came over mutual TLS, None
    when no server reported the edge (e.g. the destination has no sidecar)."""
    share = server_side.mtls if server_side is not None else None
    return None if share is None else share >= 0.999


def _edge(source: str, target: str, stats: Stats, server_side: Stats | None) -> dict[str, Any]:
    return {
        "id": f"{source}->{target}",
        "source": source,
        "target": target,
        **stats.summary(),
        "mtls": _mtls(server_side),
        "mtls_share": server_side.mtls if server_side is not None else None,
    }


def graph(window: Window) -> dict[str, Any]:
    """Nodes (workloads, services, the unknown caller) and edges with rate, error rate,
    latency, mutual TLS; service→workload edges carry their `share` of the service."""
    # What callers sent: their own reports, and what servers saw from sidecar-less callers.
    calls = _merge(
        window.group(CALLER, reporter="source"),
        window.group(CALLER, reporter="destination", source_workload=UNKNOWN),
    )
    calls_seen_by_servers = window.group(CALLER, reporter="destination")
    answers = _merge(
        window.group(BACKEND, reporter="source"),
        window.group(BACKEND, reporter="destination", source_workload=UNKNOWN),
    )
    answers_seen_by_servers = window.group(BACKEND, reporter="destination")

    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    served: dict[str, Stats] = {}

    def node(node_id: str, kind: str, ns: str = "", name: str = "", **more: str) -> str:
        nodes.setdefault(
            node_id, {"id": node_id, "kind": kind, "namespace": ns, "name": name or node_id, **more}
        )
        return node_id

    for key, stats in sorted(calls.items()):
        if stats.requests <= 0:
            continue  # a series from before the window, idle now
        src_ns, src, ns, name, host = key
        caller = _workload_id(src_ns, src)
        node(caller, UNKNOWN if caller == UNKNOWN else "workload", src_ns, src)
        service = node(
            _service_id(ns, name, host), "service", ns, name if name != UNKNOWN else host
        )
        edges.append(_edge(caller, service, stats, calls_seen_by_servers.get(key)))

    for key, stats in sorted(answers.items()):
        if stats.requests <= 0:
            continue
        ns, name, host, wl_ns, wl, version = key
        service = node(
            _service_id(ns, name, host), "service", ns, name if name != UNKNOWN else host
        )
        served[service] = served[service].add(stats) if service in served else stats
        if wl == UNKNOWN:
            continue  # no workload to draw (e.g. the request never reached one)
        workload = node(_workload_id(wl_ns, wl), "workload", wl_ns, wl, version=version)
        edges.append(_edge(service, workload, stats, answers_seen_by_servers.get(key)))

    for edge in edges:
        total = served.get(edge["source"])
        if nodes[edge["source"]]["kind"] == "service" and total is not None and total.requests:
            edge["share"] = edge["requests"] / total.requests
    for node_id, stats in served.items():
        nodes[node_id].update(stats.summary())
    return {
        "window": window.seconds,
        "nodes": sorted(nodes.values(), key=lambda n: str(n["id"])),
        "edges": sorted(edges, key=lambda e: str(e["id"])),
    }


def service(window: Window, namespace: str, name: str) -> dict[str, Any]:
    """One service as its servers' sidecars saw it (the numbers `pilotfish top`
    shows): overall, by workload and version, by caller."""
    match = {
        "reporter": "destination",
        "destination_service_namespace": namespace,
        "destination_service_name": name,
    }
    overall = window.group(("destination_service",), **match)
    versions = window.group(("destination_workload", "destination_version"), **match)
    callers = window.group(("source_workload_namespace", "source_workload"), **match)
    return {
        "window": window.seconds,
        "namespace": namespace,
        "name": name,
        "hosts": sorted(host for (host,) in overall),
        "summary": _total(overall.values(), window.seconds).summary(),
        "versions": [
            {"workload": wl, "version": v, **s.summary(), "mtls": s.mtls}
            for (wl, v), s in sorted(versions.items())
            if s.requests > 0
        ],
        "callers": [
            {"caller": _workload_id(ns, wl), **s.summary(), "mtls": s.mtls}
            for (ns, wl), s in sorted(callers.items())
            if s.requests > 0
        ],
    }


def _total(groups: Iterable[Stats], seconds: float) -> Stats:
    out = Stats(seconds)
    for s in groups:
        out = out.add(s)
    return out

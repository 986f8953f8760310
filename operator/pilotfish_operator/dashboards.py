"""Pilotfish's Grafana dashboards (mesh, service, workload, control plane), built here
and written as JSON into the chart (`make manifests`:
`python -m pilotfish_operator.dashboards charts/pilotfish/dashboards`). This module is
the one source of truth; tests/charts checks the chart's files are a fresh render, and
tests/e2e/test_grafana_dashboards.py runs every panel's query against a real
Prometheus scraping a local mesh.

The queries read Istio's standard metrics under Istio's names (`istio_*`, after the
chart's rename rule) and the control plane's `pilot_*`/`pilotfish_*` series. Every
panel and variable reads the data source chosen in the `datasource` variable.
Success means "not 5xx", as in `pilotfish top` and Istio's dashboards.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Json = dict[str, Any]

DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
RATE = "[$__rate_interval]"
TAGS = ["pilotfish", "istio"]
REQUESTS = "istio_requests_total"
DURATION = "istio_request_duration_milliseconds"
QUANTILES = (("P50", 0.5), ("P90", 0.9), ("P99", 0.99))
TCP_REPORTER = 'reporter="source"'
TCP_NOTE = (
    " TCP is read from the clients' sidecars whatever the Reporter choice: a server's"
    " sidecar cannot tell a TCP connection's client workload."
)

# ------------------------------------------------------------------ PromQL helpers


def _sel(*matchers: str) -> str:
    return "{" + ",".join(m for m in matchers if m) + "}"


def _by(labels: Sequence[str]) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


def rate_sum(metric: str, matchers: Sequence[str], by: Sequence[str] = ()) -> str:
    """Per-second rate, summed over the given labels. TCP series are always read as the
    client's sidecar reports them: the server's sidecar knows neither the client's
    workload nor the service of a TCP connection (stock Envoy cannot exchange Istio's
    metadata on TCP), so its series say `unknown` for both."""
    if metric.startswith("istio_tcp_"):
        matchers = [TCP_REPORTER if m.startswith("reporter=") else m for m in matchers]
    return f"sum(rate({metric}{_sel(*matchers)}{RATE})){_by(by)}"


def success_rate(matchers: Sequence[str], by: Sequence[str] = ()) -> str:
    """Share of requests not answered 5xx."""
    ok = rate_sum(REQUESTS, [*matchers, 'response_code!~"5.."'], by)
    return f"{ok} / {rate_sum(REQUESTS, matchers, by)}"


def quantile(q: float, histogram: str, matchers: Sequence[str], by: Sequence[str] = ()) -> str:
    buckets = rate_sum(f"{histogram}_bucket", matchers, ("le", *by))
    return f"histogram_quantile({q}, {buckets})"


# ------------------------------------------------------------------ panels


@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False

    def json(self, ref: str) -> Json:
        out: Json = {"refId": ref, "datasource": DATASOURCE, "expr": self.expr}
        if self.instant:
            out |= {"instant": True, "range": False, "format": "table"}
        else:
            out |= {"legendFormat": self.legend or "__auto", "range": True}
        return out


@dataclass
class Panel:
    kind: str  # stat, timeseries, table, row
    title: str
    targets: list[Target] = field(default_factory=list)
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    no_value: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # table: refId -> header

    def json(self, panel_id: int, x: int, y: int) -> Json:
        grid = {"h": self.height, "w": self.width, "x": x, "y": y}
        if self.kind == "row":
            return {
                "id": panel_id,
                "type": "row",
                "title": self.title,
                "collapsed": False,
                "gridPos": grid,
                "panels": [],
            }
        defaults: Json = {"unit": self.unit}
        if self.no_value is not None:
            defaults["noValue"] = self.no_value
        out: Json = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": grid,
            "targets": [t.json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
        }
        if self.kind == "stat":
            out["options"] = {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value",
                "graphMode": "area",
                "textMode": "auto",
            }
        elif self.kind == "timeseries":
            out["options"] = {
                "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        elif self.kind == "table":
            rename = {f"Value #{ref}": header for ref, header in self.columns.items()}
            out["transformations"] = [
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {"excludeByName": {"Time": True}, "renameByName": rename},
                },
            ]
            out["options"] = {"showHeader": True, "footer": {"show": False}}
        return out


def row(title: str) -> Panel:
    return Panel("row", title, width=24, height=1)


def stat(title: str, expr: str, unit: str, description: str, no_value: str | None = None) -> Panel:
    return Panel(
        "stat",
        title,
        [Target(expr)],
        unit,
        description,
        width=6,
        height=4,
        no_value=no_value,
    )


def series(title: str, unit: str, description: str, *targets: Target, width: int = 12) -> Panel:
    return Panel("timeseries", title, list(targets), unit, description, width=width)


def table(title: str, description: str, columns: Sequence[tuple[str, str]]) -> Panel:
    """One instant query per column, merged on their labels."""
    targets = [Target(expr, instant=True) for _, expr in columns]
    headers = {chr(ord("A") + i): header for i, (header, _) in enumerate(columns)}
    return Panel("table", title, targets, "short", description, width=24, columns=headers)


def latency_quantiles(
    histogram: str, matchers: Sequence[str], by: Sequence[str] = (), legend: str = ""
) -> list[Target]:
    return [
        Target(quantile(q, histogram, matchers, by), f"{name} {legend}".strip())
        for name, q in (QUANTILES if not by else (QUANTILES[0], QUANTILES[2]))
    ]


# ------------------------------------------------------------------ variables


def datasource_variable() -> Json:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(name: str, label: str, query: str) -> Json:
    """Values of a label, as Prometheus has seen them (Grafana's label_values())."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "definition": query,
        "query": query,  # the plain form every Grafana since 7 reads
        "refresh": 2,  # on time range change
        "sort": 1,
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "regex": "",
    }


def reporter_variable() -> Json:
    """Whose view: the server's sidecar (destination: sees every caller, meshed or
    not) or the clients' (source: also counts what failed before reaching a server)."""
    options = [
        {"text": v, "value": v, "selected": v == "destination"} for v in ("destination", "source")
    ]
    return {
        "type": "custom",
        "name": "reporter",
        "label": "Reporter",
        "query": "destination,source",
        "current": {"text": "destination", "value": "destination"},
        "options": options,
        "hide": 0,
        "includeAll": False,
        "multi": False,
    }


def label_values(label: str, *matchers: str) -> str:
    """Grafana's label_values() over the series that name services and workloads:
    HTTP/gRPC requests and TCP connections (`unknown` left out)."""
    names = '__name__=~"istio_requests_total|istio_tcp_connections_opened_total"'
    known = label + '!="unknown"'
    return f"label_values({_sel(names, *matchers, known)}, {label})"


# ------------------------------------------------------------------ dashboards


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], panels: list[Panel]
) -> Json:
    laid_out: list[Json] = []
    x = y = 0
    height = 0
    for number, panel in enumerate(panels, start=1):
        if x + panel.width > 24 or panel.kind == "row":
            x, y = 0, y + height
            height = 0
        laid_out.append(panel.json(number, x, y))
        x += panel.width
        height = max(height, panel.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "title": "Pilotfish",
                "tags": ["pilotfish"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables},
        "panels": laid_out,
    }


def mesh() -> Json:
    rep = 'reporter="$reporter"'
    ok5 = 'response_code=~"5.."'
    ok4 = 'response_code=~"4.."'
    workload = ("destination_workload_namespace", "destination_workload")
    service = ("destination_service",)
    panels = [
        row("HTTP and gRPC"),
        stat(
            "Request volume",
            f"round({rate_sum(REQUESTS, [rep])}, 0.001)",
            "reqps",
            "Requests per second across the mesh.",
            no_value="0",
        ),
        stat(
            "Success rate (non-5xx)",
            success_rate([rep]),
            "percentunit",
            "Share of the mesh's requests not answered 5xx.",
        ),
        stat(
            "4xx responses",
            f"round({rate_sum(REQUESTS, [rep, ok4])}, 0.001)",
            "reqps",
            "Requests per second answered 4xx.",
            no_value="0",
        ),
        stat(
            "5xx responses",
            f"round({rate_sum(REQUESTS, [rep, ok5])}, 0.001)",
            "reqps",
            "Requests per second answered 5xx.",
            no_value="0",
        ),
        series(
            "Requests by service and response code",
            "reqps",
            "Requests per second to each service, by response code.",
            Target(
                rate_sum(REQUESTS, [rep], (*service, "response_code")),
                "{{destination_service}} {{response_code}}",
            ),
        ),
        series(
            "P99 request duration by service",
            "ms",
            "99th percentile of the request duration, per service.",
            Target(quantile(0.99, DURATION, [rep], service), "{{destination_service}}"),
        ),
        table(
            "HTTP and gRPC workloads",
            "Each serving workload: requests per second, latency quantiles, success rate.",
            [
                ("Requests/s", rate_sum(REQUESTS, [rep], workload)),
                ("P50 (ms)", quantile(0.5, DURATION, [rep], workload)),
                ("P90 (ms)", quantile(0.9, DURATION, [rep], workload)),
                ("P99 (ms)", quantile(0.99, DURATION, [rep], workload)),
                ("Success rate", success_rate([rep], workload)),
            ],
        ),
        row("TCP"),
        series(
            "TCP bytes received by service",
            "Bps",
            "Bytes per second clients sent to each TCP service (counted when a connection closes)."
            + TCP_NOTE,
            Target(
                rate_sum("istio_tcp_received_bytes_total", [rep], service),
                "{{destination_service}}",
            ),
        ),
        series(
            "TCP bytes sent by service",
            "Bps",
            "Bytes per second each TCP service sent back (counted when a connection closes)."
            + TCP_NOTE,
            Target(
                rate_sum("istio_tcp_sent_bytes_total", [rep], service), "{{destination_service}}"
            ),
        ),
        table(
            "TCP workloads",
            "Each serving workload's TCP connections and bytes per second." + TCP_NOTE,
            [
                (
                    "Connections opened/s",
                    rate_sum("istio_tcp_connections_opened_total", [rep], workload),
                ),
                (
                    "Connections closed/s",
                    rate_sum("istio_tcp_connections_closed_total", [rep], workload),
                ),
                ("Bytes received/s", rate_sum("istio_tcp_received_bytes_total", [rep], workload)),
                ("Bytes sent/s", rate_sum("istio_tcp_sent_bytes_total", [rep], workload)),
            ],
        ),
    ]
    return dashboard(
        "pilotfish-mesh",
        "Pilotfish / Mesh",
        "Every service and workload of the mesh at a glance (Istio's standard metrics).",
        [datasource_variable(), reporter_variable()],
        panels,
    )


def _traffic_panels(
    prefix: str,
    matchers: Sequence[str],
    peer: Sequence[str],
    peer_legend: str,
    peer_name: str,
) -> list[Panel]:
    """Requests, success, latency and TCP bytes of some traffic, per peer."""
    return [
        series(
            f"{prefix} requests by {peer_name} and response code",
            "reqps",
            f"Requests per second, per {peer_name} and response code.",
            Target(
                rate_sum(REQUESTS, matchers, (*peer, "response_code")),
                f"{peer_legend} {{{{response_code}}}}",
            ),
        ),
        series(
            f"{prefix} success rate by {peer_name}",
            "percentunit",
            "Share of requests not answered 5xx.",
            Target(success_rate(matchers, peer), peer_legend),
        ),
        series(
            f"{prefix} request duration by {peer_name}",
            "ms",
            "50th and 99th percentile of the request duration.",
            *latency_quantiles(DURATION, matchers, peer, peer_legend),
        ),
        series(
            f"{prefix} TCP bytes by {peer_name}",
            "Bps",
            "Bytes per second received from and sent to the peer on TCP (counted when a "
            "connection closes)." + TCP_NOTE,
            Target(
                rate_sum("istio_tcp_received_bytes_total", matchers, peer),
                f"received {peer_legend}",
            ),
            Target(rate_sum("istio_tcp_sent_bytes_total", matchers, peer), f"sent {peer_legend}"),
        ),
    ]


def service() -> Json:
    here = [
        'reporter="$reporter"',
        'destination_service_namespace="$namespace"',
        'destination_service_name="$service"',
    ]
    clients = ("source_workload_namespace", "source_workload")
    workloads = ("destination_workload_namespace", "destination_workload", "destination_version")
    panels = [
        row("Service"),
        stat(
            "Request volume",
            f"round({rate_sum(REQUESTS, here)}, 0.001)",
            "reqps",
            "Requests per second to the service.",
            no_value="0",
        ),
        stat("Success rate (non-5xx)", success_rate(here), "percentunit", "Share not 5xx."),
        stat(
            "P99 request duration",
            quantile(0.99, DURATION, here),
            "ms",
            "99th percentile of the request duration.",
        ),
        stat(
            "TCP connections opened",
            f"round({rate_sum('istio_tcp_connections_opened_total', here)}, 0.001)",
            "cps",
            "TCP connections opened per second to the service." + TCP_NOTE,
            no_value="0",
        ),
        series(
            "Request duration",
            "ms",
            "50th, 90th and 99th percentile of the request duration.",
            *latency_quantiles(DURATION, here),
        ),
        series(
            "Request and response size",
            "decbytes",
            "Median request and response sizes (headers and body).",
            Target(quantile(0.5, "istio_request_bytes", here), "P50 request"),
            Target(quantile(0.5, "istio_response_bytes", here), "P50 response"),
        ),
        row("Client workloads"),
        *_traffic_panels(
            "Incoming",
            here,
            clients,
            "{{source_workload}}.{{source_workload_namespace}}",
            "client",
        ),
        row("Service workloads"),
        *_traffic_panels(
            "Served",
            here,
            workloads,
            "{{destination_workload}}.{{destination_workload_namespace}} {{destination_version}}",
            "workload",
        ),
    ]
    variables = [
        datasource_variable(),
        reporter_variable(),
        query_variable("namespace", "Namespace", label_values("destination_service_namespace")),
        query_variable(
            "service",
            "Service",
            label_values("destination_service_name", 'destination_service_namespace="$namespace"'),
        ),
    ]
    return dashboard(
        "pilotfish-service",
        "Pilotfish / Service",
        "One service: its traffic, who calls it and which of its workloads (versions) answer.",
        variables,
        panels,
    )


def workload() -> Json:
    inbound = [
        'reporter="$reporter"',
        'destination_workload_namespace="$namespace"',
        'destination_workload="$workload"',
    ]
    # What the workload calls is known to its own sidecar (on TCP the server's sidecar
    # does not know the client's workload), hence always the source's view.
    outbound = [
        'reporter="source"',
        'source_workload_namespace="$namespace"',
        'source_workload="$workload"',
    ]
    clients = ("source_workload_namespace", "source_workload")
    services = ("destination_service",)
    panels = [
        row("Workload"),
        stat(
            "Incoming request volume",
            f"round({rate_sum(REQUESTS, inbound)}, 0.001)",
            "reqps",
            "Requests per second the workload received.",
            no_value="0",
        ),
        stat(
            "Incoming success rate (non-5xx)",
            success_rate(inbound),
            "percentunit",
            "Share of the workload's answers not 5xx.",
        ),
        stat(
            "Incoming P99 request duration",
            quantile(0.99, DURATION, inbound),
            "ms",
            "99th percentile of the request duration.",
        ),
        stat(
            "Outgoing request volume",
            f"round({rate_sum(REQUESTS, outbound)}, 0.001)",
            "reqps",
            "Requests per second the workload sent.",
            no_value="0",
        ),
        series(
            "Incoming request duration",
            "ms",
            "50th, 90th and 99th percentile of the request duration.",
            *latency_quantiles(DURATION, inbound),
        ),
        series(
            "TCP traffic",
            "Bps",
            "Bytes per second on the workload's incoming and outgoing TCP connections." + TCP_NOTE,
            Target(rate_sum("istio_tcp_received_bytes_total", inbound), "received (incoming)"),
            Target(rate_sum("istio_tcp_sent_bytes_total", inbound), "sent (incoming)"),
            Target(rate_sum("istio_tcp_received_bytes_total", outbound), "sent (outgoing)"),
            Target(rate_sum("istio_tcp_sent_bytes_total", outbound), "received (outgoing)"),
        ),
        row("Inbound"),
        *_traffic_panels(
            "Incoming",
            inbound,
            clients,
            "{{source_workload}}.{{source_workload_namespace}}",
            "client",
        ),
        row("Outbound"),
        *_traffic_panels("Outgoing", outbound, services, "{{destination_service}}", "service"),
    ]
    variables = [
        datasource_variable(),
        reporter_variable(),
        query_variable("namespace", "Namespace", label_values("destination_workload_namespace")),
        query_variable(
            "workload",
            "Workload",
            label_values("destination_workload", 'destination_workload_namespace="$namespace"'),
        ),
    ]
    return dashboard(
        "pilotfish-workload",
        "Pilotfish / Workload",
        "One workload: what it receives (by client) and what it calls (by service).",
        variables,
        panels,
    )


def control_plane() -> Json:
    convergence = "pilot_proxy_convergence_time"
    panels = [
        row("Proxies"),
        stat(
            "Connected proxies",
            "sum(pilot_xds)",
            "short",
            "Sidecars with an open xDS stream, over every replica.",
            no_value="0",
        ),
        stat(
            "Services",
            "max(pilot_services)",
            "short",
            "Services the mesh knows.",
        ),
        stat(
            "VirtualServices",
            "max(pilot_virt_services)",
            "short",
            "VirtualServices the mesh knows.",
        ),
        stat(
            "Invalid config objects",
            "sum(max(pilotfish_config_invalid_objects) by (kind))",
            "short",
            "Objects refused by validation (left out, or kept at their last good "
            "version); see their status or `pilotfish` logs.",
            no_value="0",
        ),
        series(
            "Connected proxies by replica",
            "short",
            "Sidecars with an open xDS stream to each control-plane replica.",
            Target("sum(pilot_xds) by (instance)", "{{instance}}"),
        ),
        series(
            "Proxy convergence time",
            "s",
            "From a change the control plane saw until a proxy acknowledged all the "
            "config built from it.",
            *[Target(quantile(q, convergence, []), name) for name, q in QUANTILES],
        ),
        row("xDS"),
        series(
            "xDS pushes by type",
            "ops",
            "xDS responses sent per second (cds, eds, lds, rds, sds).",
            Target(rate_sum("pilot_xds_pushes", [], ("type",)), "{{type}}"),
        ),
        series(
            "xDS rejections by type",
            "ops",
            "Configurations proxies rejected (NACK) per second; they keep their last good one.",
            Target(rate_sum("pilot_total_xds_rejects", [], ("type",)), "{{type}}"),
        ),
        row("Configuration"),
        series(
            "Mesh rebuilds",
            "ops",
            "Rebuilds of the mesh from its objects per second (changes are debounced).",
            Target(
                rate_sum("pilotfish_pipeline_rebuilds_total", [], ("instance",)), "{{instance}}"
            ),
        ),
        series(
            "Last rebuild duration",
            "s",
            "Seconds the last rebuild took: objects to mesh IR (translate), mesh IR to "
            "Envoy resources for the connected proxies (encode).",
            Target(
                "max(pilotfish_pipeline_last_translate_seconds) by (instance)",
                "translate {{instance}}",
            ),
            Target(
                "max(pilotfish_pipeline_last_encode_seconds) by (instance)", "encode {{instance}}"
            ),
        ),
        series(
            "Config objects",
            "short",
            "Services and VirtualServices the mesh knows.",
            Target("max(pilot_services)", "Services"),
            Target("max(pilot_virt_services)", "VirtualServices"),
        ),
        series(
            "Invalid config objects by kind",
            "short",
            "Objects refused by validation, per kind.",
            Target("max(pilotfish_config_invalid_objects) by (kind)", "{{kind}}"),
        ),
    ]
    return dashboard(
        "pilotfish-control-plane",
        "Pilotfish / Control plane",
        "The control plane: connected proxies, xDS pushes and rejections, convergence, "
        "configuration.",
        [datasource_variable()],
        panels,
    )


DASHBOARDS = {
    "mesh": mesh,
    "service": service,
    "workload": workload,
    "control-plane": control_plane,
}


def render() -> dict[str, str]:
    """File name -> JSON text, as shipped in the chart."""
    return {
        f"{name}.json": json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()
    }


def write(directory: Path, files: Iterable[tuple[str, str]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.json"):
        old.unlink()
    for name, text in files:
        (directory / name).write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("directory", type=Path, help="where to write <name>.json")
    args = p.parse_args()
    write(args.directory, render().items())


if __name__ == "__main__":
    main()

"""The chart's Grafana dashboards: fresh from their source, shipped as ConfigMaps Grafana's
sidecar picks up (only when asked for), each a well-formed Grafana dashboard reading the
data source the user picks."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest
from chartrender import CHART, documents, helm, render

from pilotfish_operator import dashboards

SHIPPED = CHART / "dashboards"
NAMES = ["control-plane.json", "mesh.json", "service.json", "workload.json"]
ENABLED = ("--set", "dashboards.enabled=true")


def shipped() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(SHIPPED.glob("*.json"))}


def configmaps(*args: str) -> list[dict[str, Any]]:
    return [d for d in documents(render(*args)) if d["kind"] == "ConfigMap"]


def test_chart_dashboards_are_a_fresh_render_of_their_source() -> None:
    assert sorted(shipped()) == NAMES
    assert shipped() == dashboards.render(), (
        "charts/pilotfish/dashboards is stale: run `make manifests`"
    )


def test_configmaps_carry_grafanas_sidecar_label_and_exactly_the_json_files() -> None:
    maps = [m for m in configmaps(*ENABLED) if m["metadata"]["name"].startswith("pilotfish-dash")]
    assert sorted(m["metadata"]["name"] for m in maps) == [
        "pilotfish-dashboard-control-plane",
        "pilotfish-dashboard-mesh",
        "pilotfish-dashboard-service",
        "pilotfish-dashboard-workload",
    ]
    files = shipped()
    for m in maps:
        assert m["metadata"]["namespace"] == "pilotfish-system"
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert "annotations" not in m["metadata"]
        ((key, text),) = m["data"].items()
        assert text == files[key]  # byte for byte what an import by hand reads
        assert m["metadata"]["name"] == "pilotfish-dashboard-" + key.removesuffix(".json")


def test_label_namespace_and_annotations_are_configurable() -> None:
    maps = configmaps(
        *ENABLED,
        "--set",
        "dashboards.label=my_dashboards",
        "--set",
        "dashboards.labelValue=pilotfish",
        "--set",
        "dashboards.namespace=monitoring",
        "--set",
        "dashboards.annotations.grafana_folder=Mesh",
    )
    ours = [m for m in maps if m["metadata"]["name"].startswith("pilotfish-dashboard-")]
    assert len(ours) == 4
    for m in ours:
        assert m["metadata"]["namespace"] == "monitoring"
        assert m["metadata"]["labels"]["my_dashboards"] == "pilotfish"
        assert "grafana_dashboard" not in m["metadata"]["labels"]
        assert m["metadata"]["annotations"] == {"grafana_folder": "Mesh"}


def test_dashboards_are_off_by_default() -> None:
    assert not [m for m in configmaps() if "grafana_dashboard" in m["metadata"]["labels"]]


def test_chart_with_dashboards_lints_and_is_valid_kubernetes() -> None:
    out = helm("lint", "--strict", str(CHART), *ENABLED)
    assert out.returncode == 0, out.stdout + out.stderr
    for m in configmaps(*ENABLED):
        kubernetes_validate.validate(m, "1.29.0", strict=True)
        # A ConfigMap holds at most 1 MiB.
        assert sum(len(v.encode()) for v in m["data"].values()) < 1024 * 1024


@pytest.mark.parametrize("name", NAMES)
def test_each_file_is_a_grafana_dashboard_reading_the_chosen_prometheus(name: str) -> None:
    board = json.loads((SHIPPED / name).read_text())
    assert board["uid"] == "pilotfish-" + name.removesuffix(".json")
    assert board["title"].startswith("Pilotfish / ")
    assert isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    source = variables["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    uses: set[str] = set()
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert v["definition"].startswith("label_values(")
            assert v["query"] == v["definition"]
            uses |= set(re.findall(r"\$(\w+)", v["definition"]))
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    graphs = [p for p in panels if p["type"] != "row"]
    assert graphs
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
    for p in graphs:
        assert p["type"] in ("stat", "timeseries", "table")
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        assert p["title"] and p["description"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"]
            assert t["expr"] and t["refId"]
            uses |= set(re.findall(r"\$(\w+)", t["expr"]))
    # Every variable a query uses is defined (or one of Grafana's own).
    assert uses <= set(variables) | {"__rate_interval", "__interval", "__range"}
    assert uses >= set(variables) - {"datasource"}, "a variable nothing reads"

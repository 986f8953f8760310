"""`pilotfish analyze`: manifests checked offline, errors and warnings named by object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pilotfish_operator.cli import main

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "details", "namespace": "shop"},
    "spec": {"selector": {"app": "details"}, "ports": [{"name": "http", "port": 9080}]},
}


def _vs(http: list[dict[str, object]]) -> dict[str, object]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "details", "namespace": "shop"},
        "spec": {"hosts": ["details"], "http": http},
    }


ROUTE = {"route": [{"destination": {"host": "details"}}]}


def test_clean_manifests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump_all([SERVICE, _vs([ROUTE])]))
    assert main(["analyze", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "No problems found.\n"


def test_warnings_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # JSON manifests load as YAML does; a directory is read whole.
    (tmp_path / "svc.json").write_text(json.dumps(SERVICE))
    (tmp_path / "vs.yaml").write_text(yaml.safe_dump(_vs([ROUTE, ROUTE])))
    assert main(["analyze", str(tmp_path)]) == 0  # warnings only
    assert capsys.readouterr().out.splitlines() == [
        "Warning: VirtualService shop/details: spec.http[1] is never used: spec.http[0] "
        "takes every request before it"
    ]
    assert main(["analyze", "--fail-on-warnings", str(tmp_path)]) == 1
    capsys.readouterr()

    bad = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "details", "namespace": "shop"},
        "spec": {"host": "details", "subsets": [{"name": "v1"}, {"name": "v1"}]},
    }
    (tmp_path / "dr.yaml").write_text(yaml.safe_dump(bad))
    assert main(["analyze", str(tmp_path / "dr.yaml"), str(tmp_path / "svc.json")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("Error: DestinationRule shop/details: spec.subsets")


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [unclosed")
    assert main(["analyze", str(tmp_path / "broken.yaml")]) == 2
    assert "broken.yaml: cannot read" in capsys.readouterr().err

"""Sidecar validation: our own cases (testdata/api/sidecars.yaml), written after Istio's
webhook rules; every Sidecar of Istio's validation dataset is among the valid shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish_operator.api import ConfigError, Sidecar, parse

CASES: list[dict[str, Any]] = list(
    yaml.safe_load_all((Path(__file__).parent / "testdata/api/sidecars.yaml").read_text())
)


def _id(case: dict[str, Any]) -> str:
    return f"{case['metadata']['name']}-{'bad' if 'expect' in case else 'ok'}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_own_cases(case: dict[str, Any]) -> None:
    case = dict(case)
    expect = case.pop("expect", None)
    if expect is None:
        assert isinstance(parse(case), Sidecar)
        return
    with pytest.raises(ConfigError) as info:
        parse(case)
    assert str(info.value) == expect


def test_ingress_endpoint_forms() -> None:
    sidecar = parse(CASES[2])
    assert isinstance(sidecar, Sidecar)
    assert [i.endpoint for i in sidecar.spec.ingress] == [
        ("127.0.0.1", 8080),
        ("0.0.0.0", 8081),
        "unix:///var/run/app.sock",
        ("::1", 8083),
    ]

"""Istio's validation verdicts, as our own cases: Istio's valid objects of our kinds are
accepted, and its invalid ones refused naming the field Istio names. The cases mirror
Istio's CRD validation data one to one (scripts/istio_testdata.py runs Istio's files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish_operator.api import ConfigError, parse

CASES: list[dict[str, Any]] = list(
    yaml.safe_load_all((Path(__file__).parent / "testdata/api/istio_verdicts.yaml").read_text())
)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['kind']}-{c['metadata']['name']}" for c in CASES])
def test_istio_verdict(case: dict[str, Any]) -> None:
    field = case.get("_err")
    obj = {k: v for k, v in case.items() if k != "_err"}
    if field is None:
        parse(obj)
        return
    with pytest.raises(ConfigError) as info:
        parse(obj)
    paths = [p.path for p in info.value.problems]
    assert any(p == field or p.startswith((field + ".", field + "[")) for p in paths), (
        f"Istio names {field}; we say: {info.value}"
    )

"""Golden tests for the API → IR seam: `<case>.in.yaml` (objects) → `<case>.out.yaml` (IR)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from pilotfish_operator.store import Store
from pilotfish_operator.translate import Options, translate
from pilotfish_xds import ir

CASES = Path(__file__).parent / "testdata" / "translate"
MESH = TypeAdapter(ir.Mesh)


def dump_ir(
    mesh: ir.Mesh, warnings: list[str], statuses: dict[tuple[str, str, str], Any] | None = None
) -> str:
    doc = MESH.dump_python(mesh, mode="json", exclude_defaults=True)
    if warnings:
        doc["warnings"] = warnings
    if statuses:  # the Gateway API objects' status
        doc["statuses"] = {f"{k} {ns}/{n}": v for (k, ns, n), v in sorted(statuses.items())}
    return yaml.safe_dump(doc, sort_keys=False, width=100)


@pytest.mark.parametrize(
    "case", sorted(p.name.removesuffix(".in.yaml") for p in CASES.glob("*.in.yaml"))
)
def test_translate(case: str, golden: Callable[[Path, str], None]) -> None:
    store = Store()
    for obj in yaml.safe_load_all((CASES / f"{case}.in.yaml").read_text()):
        if obj:
            store.apply(obj)
    assert not store.errors(), store.errors()
    result = translate(store, Options(local=True))
    golden(CASES / f"{case}.out.yaml", dump_ir(result.mesh, result.warnings, result.statuses))


def test_no_orphan_outputs() -> None:
    inputs = {p.name.removesuffix(".in.yaml") for p in CASES.glob("*.in.yaml")}
    outputs = {p.name.removesuffix(".out.yaml") for p in CASES.glob("*.out.yaml")}
    assert outputs <= inputs, f"golden outputs without inputs: {sorted(outputs - inputs)}"

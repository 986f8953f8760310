"""Golden tests for the IR → Envoy seam: `in/<case>.yaml` (mesh IR + which proxy) →
`out/<case>.<type>.yaml`, decoded from the exact bytes the ADS server would send."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter

from pilotfish_xds import ir, types
from pilotfish_xds.codec import EncodeCache, decode
from pilotfish_xds.translate import WorkloadSecrets, translate

CASES = Path(__file__).parent / "testdata" / "envoy"
MESH = TypeAdapter(ir.Mesh)
OUTPUTS = {
    "clusters": types.CLUSTER,
    "endpoints": types.ENDPOINT,
    "listeners": types.LISTENER,
    "routes": types.ROUTE,
}


def _cases() -> list[str]:
    return sorted(p.stem for p in (CASES / "in").glob("*.yaml"))


@pytest.mark.parametrize("case", _cases())
def test_envoy(case: str, golden: Callable[[Path, str], None]) -> None:
    doc = yaml.safe_load((CASES / "in" / f"{case}.yaml").read_text())
    mesh = MESH.validate_python(doc["mesh"])
    proxy = mesh.proxy(doc["proxy"])
    assert proxy is not None
    # `mesh_tls: true`: the proxy holds a workload certificate (stand-in PEM bytes; the
    # goldens show where secrets are referenced, never their content).
    secrets = WorkloadSecrets(b"<chain>", b"<key>", b"<roots>") if doc.get("mesh_tls") else None
    snapshot = translate(mesh, proxy, EncodeCache(), secrets)
    assert snapshot.consistent(), snapshot.missing()
    assert sorted(snapshot.resources(types.SECRET)) == (["ROOTCA", "default"] if secrets else [])
    for short, type_url in OUTPUTS.items():
        resources = [
            decode(type_url, r.body).to_dict()
            for _, r in sorted(snapshot.resources(type_url).items())
        ]
        golden(
            CASES / "out" / f"{case}.{short}.yaml",
            yaml.safe_dump(resources, sort_keys=False, width=100),
        )


def test_no_orphan_outputs() -> None:
    cases = set(_cases())
    orphans = {p.name for p in (CASES / "out").glob("*.yaml") if p.name.split(".")[0] not in cases}
    assert not orphans, f"golden outputs without inputs: {sorted(orphans)}"

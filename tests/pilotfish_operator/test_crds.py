"""Generated CRDs: up to date on disk, structural, and accepting every valid example."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from pilotfish_operator.api import Duration, IstioModel
from pilotfish_operator.api.kube import IntOrString
from pilotfish_operator.crds import render_all, structural

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "manifests" / "crds"
VALID = list(
    yaml.safe_load_all((Path(__file__).parent / "testdata" / "api" / "valid.yaml").read_text())
)
RENDERED = render_all()
CRDS = {name: yaml.safe_load(text) for name, text in RENDERED.items()}


def test_files_on_disk_match_the_models() -> None:
    on_disk = {
        str(p.relative_to(CRD_DIR)): p.read_text(encoding="utf-8") for p in CRD_DIR.rglob("*.yaml")
    }
    stale = sorted(set(on_disk) ^ set(RENDERED)) + sorted(
        name for name in RENDERED if on_disk.get(name, RENDERED[name]) != RENDERED[name]
    )
    assert not stale, f"manifests/crds is out of date ({', '.join(stale)}): run `make manifests`"


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")


def _schemas() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, crd in CRDS.items():
        for version in crd["spec"]["versions"]:
            yield name, version["name"], version["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize(("name", "version", "schema"), list(_schemas()))
def test_schema_is_structural(name: str, version: str, schema: dict[str, Any]) -> None:
    for path, node in _nodes(schema):
        where = f"{name} {version} {path or '<root>'}"
        assert "$ref" not in node, where
        assert (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{where}: no type"
        for key in ("anyOf", "oneOf", "allOf"):
            for option in node.get(key, []):
                assert "type" not in option, f"{where}: {key} carries a type"
        assert not ({"properties", "additionalProperties"} <= set(node)), where
        assert "default" not in node and "title" not in node, where


def test_crd_metadata_follows_istio() -> None:
    vs = CRDS["virtualservices.networking.istio.io.yaml"]["spec"]
    dr = CRDS["destinationrules.networking.istio.io.yaml"]["spec"]
    for spec, short in ((vs, "vs"), (dr, "dr")):
        assert spec["group"] == "networking.istio.io"
        assert spec["names"]["shortNames"] == [short]
        assert spec["names"]["categories"] == ["istio-io", "networking-istio-io"]
        versions = {v["name"]: (v["served"], v["storage"]) for v in spec["versions"]}
        assert versions == {"v1": (True, True), "v1beta1": (True, False), "v1alpha3": (True, False)}
        schemas = [v["schema"] for v in spec["versions"]]
        assert all(s == schemas[0] for s in schemas)
        assert all(v["subresources"] == {"status": {}} for v in spec["versions"])
        status = schemas[0]["openAPIV3Schema"]["properties"]["status"]
        assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert [c["name"] for c in vs["versions"][0]["additionalPrinterColumns"]] == [
        "Gateways",
        "Hosts",
        "Age",
    ]
    assert [c["name"] for c in dr["versions"][0]["additionalPrinterColumns"]] == ["Host", "Age"]


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _is(value: Any, kind: str) -> bool:
    # A separate function so mypy does not narrow ``value`` to ``object`` in the caller.
    return isinstance(value, _TYPES[kind]) and (kind == "boolean" or not isinstance(value, bool))


def _violations(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """The subset of OpenAPI v3 validation our generated schemas use, plus pruning: a field the
    schema does not know would be silently dropped by the API server, so it counts as an error."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            yield f"{path}: not int-or-string"
        return
    kind = schema["type"]
    if not _is(value, kind):
        yield f"{path}: expected {kind}, got {value!r}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{path}: {value!r} not in enum"
    if "minimum" in schema and value < schema["minimum"]:
        yield f"{path}: below minimum"
    if "maximum" in schema and value > schema["maximum"]:
        yield f"{path}: above maximum"
    if "minLength" in schema and len(value) < schema["minLength"]:
        yield f"{path}: too short"
    if "minItems" in schema and len(value) < schema["minItems"]:
        yield f"{path}: too few items"
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _violations(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        for req in schema.get("required", []):
            if req not in value:
                yield f"{path}.{req}: required"
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                yield from _violations(item, props[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from _violations(item, schema["additionalProperties"], f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                yield f"{path}.{key}: unknown field (would be pruned)"


def _schema_for(kind: str) -> dict[str, Any]:
    crd = next(c for c in CRDS.values() if c["spec"]["names"]["kind"] == kind)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("obj", VALID, ids=[o["metadata"]["name"] for o in VALID])
def test_valid_examples_pass_the_crd_schema(obj: dict[str, Any]) -> None:
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    assert list(_violations(body, _schema_for(obj["kind"]))) == []


def test_schema_check_catches_problems() -> None:
    # The hand-written checker above must itself be able to fail.
    bad = {"spec": {"host": "x", "subsets": [{"name": "v1", "lables": {}}], "exportTo": "."}}
    assert list(_violations(bad, _schema_for("DestinationRule"))) == [
        ".spec.subsets[0].lables: unknown field (would be pruned)",
        ".spec.exportTo: expected array, got '.'",
    ]


def test_structural_conversion_rules() -> None:
    class Inner(IstioModel):
        flag: bool | None = None

    class Outer(IstioModel):
        inner: Inner | None = None
        timeout: Duration | None = None
        target: IntOrString | None = None
        labels: dict[str, str] = {}
        anything: Any = None

    schema = structural(Outer.model_json_schema(by_alias=True))
    assert schema == {
        "type": "object",
        "properties": {
            "inner": {"type": "object", "properties": {"flag": {"type": "boolean"}}},
            "timeout": {"type": "string"},
            "target": {"x-kubernetes-int-or-string": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "anything": {"x-kubernetes-preserve-unknown-fields": True},
        },
    }

    class Either(BaseModel):
        value: int | str

    with pytest.raises(ValueError, match="union"):
        structural(Either.model_json_schema())

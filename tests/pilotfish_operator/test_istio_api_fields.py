"""Every field and enum value of Istio's API (the kinds we implement) is in our models:
`testdata/api/istio_api_fields.txt`, written from istio/api's CRDs by
scripts/istio_api_fields.py, lists them. A field we model under another name, or an enum
value we lost, fails here."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from pilotfish_operator.api.kinds import BY_KIND

LINES = [
    line
    for line in (Path(__file__).parent / "testdata/api/istio_api_fields.txt")
    .read_text()
    .splitlines()
    if line and not line.startswith("#")
]
_SEGMENT = re.compile(r"([^.\[\]{}]+)((?:\[\]|\{\})*)")


def _parts(annotation: Any) -> list[Any]:
    """The member types of an annotation (through Optional, Annotated, containers)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _parts(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [p for a in typing.get_args(annotation) if a is not type(None) for p in _parts(a)]
    return [annotation]


def _unwrap(annotation: Any, container: str) -> list[Any]:
    out = []
    for part in _parts(annotation):
        args = typing.get_args(part)
        if container == "[]" and typing.get_origin(part) in (tuple, list):
            out += _parts(args[0])
        elif container == "{}" and typing.get_origin(part) is dict:
            out += _parts(args[1])
    return out


def _field(model: type[BaseModel], name: str) -> Any:
    by_name = model.model_config.get("populate_by_name", False)  # proto names, as protojson
    for field_name, info in model.model_fields.items():
        if (info.alias or field_name) == name or (by_name and field_name == name):
            return info.annotation
    raise AssertionError(f"{model.__name__} has no field {name!r}")


def _resolve(kind: str, path: str) -> list[Any]:
    spec = BY_KIND[kind].spec
    assert spec is not None
    current: list[Any] = [spec]
    for name, containers in _SEGMENT.findall(path.removeprefix("spec.")):
        models = [c for c in current if isinstance(c, type) and issubclass(c, BaseModel)]
        assert models, f"{path}: {name} is inside a non-object"
        current = [p for m in models for p in _parts(_field(m, name))]
        for container in re.findall(r"\[\]|\{\}", containers):
            current = [p for c in current for p in _unwrap(c, container)]
            assert current, f"{path}: {name} is not a {'list' if container == '[]' else 'map'}"
    return current


@pytest.mark.parametrize("line", LINES)
def test_istio_field_is_modelled(line: str) -> None:
    kind, _, rest = line.partition(" ")
    path, _, value = rest.partition(" = ")
    found = _resolve(kind, path)
    if value:
        literals = {v for t in found if typing.get_origin(t) is Literal for v in typing.get_args(t)}
        assert value in literals, f"{line}: not among {sorted(literals)}"

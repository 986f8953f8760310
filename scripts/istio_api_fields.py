#!/usr/bin/env python3
"""Write the field paths and enum values of Istio's API for the kinds we implement, from
istio/api's generated CRDs, to tests/pilotfish_operator/testdata/api/istio_api_fields.txt
(test_istio_api_fields.py checks our models accept every one). A developer tool, not CI:

    git -C <istio/api checkout> show HEAD:kubernetes/customresourcedefinitions.gen.yaml \\
        > /tmp/istio-crds.yaml
    .venv/bin/python scripts/istio_api_fields.py /tmp/istio-crds.yaml [--commit <sha>]

One line per field: `<Kind> <path>` (`[]` a list item, `{}` a map value), and one per
enum value: `<Kind> <path> = <VALUE>`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pilotfish_operator.api.kinds import SPECS

OUT = Path(__file__).parents[1] / "tests/pilotfish_operator/testdata/api/istio_api_fields.txt"


def _walk(schema: Mapping[str, Any], path: str) -> Iterator[str]:
    if schema.get("type") == "array":
        yield from _walk(schema.get("items", {}), path + "[]")
        return
    for value in schema.get("enum", ()):
        yield f"{path} = {value}"
    props: dict[str, Any] = dict(schema.get("properties", {}))
    for alt in (*schema.get("oneOf", ()), *schema.get("anyOf", ())):
        props.update(alt.get("properties", {}))
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping) and not props:
        yield from _walk(extra, path + "{}")
    for name in sorted(props):
        yield f"{path}.{name}"
        yield from _walk(props[name], f"{path}.{name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("crds", type=Path)
    ap.add_argument("--commit", default="b8f8791d")
    args = ap.parse_args()
    ours = {(s.group, s.api_kind): s.kind for s in SPECS if s.group.endswith(".istio.io")}
    lines = [f"# istio/api @{args.commit}: scripts/istio_api_fields.py wrote this"]
    for crd in yaml.safe_load_all(args.crds.read_text()):
        if not crd:
            continue
        kind = ours.get((crd["spec"]["group"], crd["spec"]["names"]["kind"]))
        if kind is None:
            continue
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        lines += sorted({f"{kind} {p}" for p in _walk(schema, "spec")})
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{len(lines) - 1} lines → {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

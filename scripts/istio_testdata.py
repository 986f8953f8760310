#!/usr/bin/env python3
"""Run `api.parse` over Istio's own test data and print every disagreement.

A developer check, not part of CI (the data is not ours and is not in the repository):

    .venv/bin/python scripts/istio_testdata.py [--root /work/shared/istio-testdata]

(or $ISTIO_TESTDATA_ROOT). Known, explained disagreements (docs/architecture.md): a
`{**}` path template not last (Istio's webhook refuses it too), `presence` in a
RequestAuthentication (newer than the API we follow), and `001:db8::` unquoted in a
flow list (PyYAML reads a mapping).

- `istio/pkg/config/validation/testdata/crds/*.yaml`: a document with `_err` is invalid
  (when `_err` starts with a field path, our error must name that field), the others valid;
- `istio/pkg/test/datasets/validation/dataset/*.yaml`, the samples and the istio.io page
  examples: every Istio object is valid;
- `istio/istioctl/pkg/validate/validate_test.go.strings/*`: `invalid*` files are refused
  (when loading the file or parsing an object), the others load and parse;
- `istio/tests/integration/pilot/testdata/invalid.yaml`: the file does not load.

Objects of kinds we recognise but do not implement yet count as "unsupported" and are
only counted. Exit status 1 when there is any disagreement.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pilotfish_operator.api import ConfigError, parse
from pilotfish_operator.api.kinds import spec_for
from pilotfish_operator.sources.files import FileError, load_documents

ISTIO_GROUPS = (
    "networking.istio.io",
    "security.istio.io",
    "telemetry.istio.io",
    "extensions.istio.io",
)
# `_err` naming a field: "spec.a[0].b: reason" or "b[0] in body should ...".
_FIELD = re.compile(r"^([A-Za-z][\w.\[\]]*)(?::| in body)")


def _istio(doc: Mapping[str, Any]) -> bool:
    version = doc.get("apiVersion")
    return isinstance(version, str) and version.split("/", 1)[0] in ISTIO_GROUPS


def _verdict(doc: Mapping[str, Any]) -> tuple[str, ConfigError | None]:
    """("ok" | "invalid" | "unsupported", the error)."""
    if spec_for(doc.get("apiVersion"), doc.get("kind")) is None:
        try:
            parse(doc)
        except ConfigError as err:
            return "unsupported", err
    try:
        parse(doc)
    except ConfigError as err:
        return "invalid", err
    return "ok", None


def _names_field(err: ConfigError, field: str) -> bool:
    # Istio's path, or a field inside it (we may point deeper: spec.ports.<name>).
    paths = [p.path for p in err.problems]
    return any(
        path == field or path.endswith("." + field) or path.startswith((field + ".", field + "["))
        for path in paths
    )


def _crd_cases(root: Path) -> Iterator[tuple[str, Mapping[str, Any], str | None]]:
    for path in sorted((root / "istio/pkg/config/validation/testdata/crds").glob("*.yaml")):
        for i, doc in enumerate(load_documents(path)):
            expected = doc.get("_err")
            obj = {k: v for k, v in doc.items() if k != "_err"}
            yield f"{path.name}#{i}", obj, str(expected) if expected is not None else None


def _valid_files(root: Path) -> Iterator[Path]:
    yield from sorted((root / "istio/pkg/test/datasets/validation/dataset").glob("*.yaml"))
    yield from sorted((root / "istio/samples").rglob("*.yaml"))
    yield from sorted((root / "istio.io").rglob("*.yaml"))
    # The top-level files are older copies (one uses abort.percent, which Istio removed).


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    default = os.environ.get("ISTIO_TESTDATA_ROOT", "/work/shared/istio-testdata")
    ap.add_argument("--root", type=Path, default=Path(default))
    args = ap.parse_args()
    root: Path = args.root
    bad: list[str] = []
    counts: Counter[str] = Counter()

    for name, obj, expected in _crd_cases(root):
        verdict, err = _verdict(obj)
        counts[f"crds {verdict}"] += 1
        if verdict == "unsupported":
            continue
        if expected is None and err is not None:
            bad.append(f"{name}: valid in Istio, refused: {err}")
        elif expected is not None and err is None:
            bad.append(f"{name}: invalid in Istio ({expected}), accepted")
        elif expected is not None and err is not None:
            m = _FIELD.match(expected)
            if m and not _names_field(err, m.group(1)):
                bad.append(f"{name}: Istio names {m.group(1)} ({expected}); we say: {err}")

    for path in _valid_files(root):
        try:
            docs = load_documents(path)
        except FileError as err:
            bad.append(f"{path.relative_to(root)}: does not load: {err}")
            continue
        for i, doc in enumerate(docs):
            if not _istio(doc):
                continue
            verdict, err = _verdict(doc)
            counts[f"valid files {verdict}"] += 1
            if verdict == "invalid":
                bad.append(f"{path.relative_to(root)}#{i}: valid in Istio, refused: {err}")

    strings = root / "istio/istioctl/pkg/validate/validate_test.go.strings"
    for path in sorted(strings.iterdir()):
        want_ok = not path.name.startswith("invalid")
        try:
            docs = load_documents(path)
            errors = [e for d in docs if (e := _verdict(d)[1]) is not None]
            problem = "; ".join(str(e) for e in errors) or None
        except FileError as err:
            problem = str(err)
        counts["validate strings"] += 1
        if want_ok and problem:
            bad.append(f"{path.name}: valid in istioctl, refused: {problem}")
        elif not want_ok and not problem:
            bad.append(f"{path.name}: invalid in istioctl, accepted")

    invalid = root / "istio/tests/integration/pilot/testdata/invalid.yaml"
    try:
        load_documents(invalid)
        bad.append(f"{invalid.relative_to(root)}: Istio cannot parse it, we loaded it")
    except FileError:
        counts["unparsable"] += 1

    for line in bad:
        print(line)
    print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), file=sys.stderr)
    print(f"{len(bad)} disagreement(s)", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

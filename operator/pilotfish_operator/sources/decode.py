"""Manifest text → documents, as `kubectl`/`istioctl` read it: YAML, or JSON.

`*.json` is parsed as JSON (PyYAML refuses the tab indentation JSON often has, and reads
`1e3` as a string); anything else as YAML, falling back to JSON. A duplicate key in a
mapping is an error naming the key and its line, as Istio's strict decoding refuses it
(the last value silently winning would apply something the author did not see).
"""

from __future__ import annotations

import json
import json.scanner
import re
from typing import Any

import yaml

_DECODER: Any = json.decoder  # scanstring and py_make_scanner are not in typeshed
_SCANNER: Any = json.scanner
_COLON = re.compile(r"\s*:")


_NOT_AN_OBJECT = "not an object (a manifest is a mapping with apiVersion and kind)"


class DecodeError(Exception):
    """Neither YAML nor JSON, or a duplicate key: one line, with the line number."""


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base`: its keys may be overridden here (YAML's merge)
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                continue  # a complex key (`? [a, b]`): not in a manifest, left to YAML
            if key in seen:
                line = key_node.start_mark.line + 1
                raise DecodeError(f"line {line}: duplicate key {key!r}")
            seen.add(key)
        out: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return out


def _yaml(text: str) -> list[Any]:
    loader = _StrictLoader(text)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node said there is one
            doc = loader.construct_document(node)
            if doc is not None and not isinstance(doc, dict):
                raise DecodeError(f"line {node.start_mark.line + 1}: {_NOT_AN_OBJECT}")
            docs.append(doc)
        return docs
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = err.problem or err.context or "malformed"
        if err.problem and err.context and err.context_mark:  # where the open construct began
            at = err.context_mark
            reason += f" ({err.context} at line {at.line + 1}, column {at.column + 1})"
        raise DecodeError(f"{where}not valid YAML: {reason}") from None
    except yaml.YAMLError as err:  # pragma: no cover - every scanner/parser error is marked
        raise DecodeError(f"not valid YAML: {err}") from None
    finally:
        loader.dispose()


def _json(text: str) -> list[Any]:
    decoder: Any = json.JSONDecoder()  # typeshed lacks the scanner hooks set below
    plain = decoder.parse_object

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
        text, start = s_and_end
        pairs, end = plain(s_and_end, *args)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                line = text.count("\n", 0, _key_at(text, start, key)) + 1
                raise DecodeError(f"line {line}: duplicate key {key!r}")
            seen.add(key)
        return dict(pairs), end

    decoder.object_pairs_hook = list  # keep every pair: duplicates are refused above
    decoder.parse_object = parse_object
    # The pure-Python scanner calls parse_object (the C one does not).
    decoder.scan_once = _SCANNER.py_make_scanner(decoder)
    try:
        doc = decoder.decode(text)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise DecodeError(f"{where}: not valid JSON: {err.msg}") from None
    docs = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(d, dict) for d in docs):
        raise DecodeError(f"line 1: {_NOT_AN_OBJECT}")
    return docs


def _key_at(text: str, start: int, key: str) -> int:
    """Where the second `key` of the object beginning at `start` is (keys of nested
    objects and string values skipped)."""
    depth, pos, found = 0, start, 0
    while pos < len(text):
        c = text[pos]
        if c == '"':
            token, end = _DECODER.scanstring(text, pos + 1)
            if depth == 0 and token == key and _COLON.match(text, end):
                found += 1
                if found == 2:
                    return pos
            pos = end
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            if depth == 0:
                break
            depth -= 1
        pos += 1
    return start


def decode(text: str, json_first: bool) -> list[Any]:
    """The documents of one file; raises DecodeError."""
    if not text.strip():
        return []  # an empty file (or one being written) holds no objects
    if json_first:
        return _json(text)
    try:
        return _yaml(text)
    except DecodeError as yaml_error:
        if not text.lstrip().startswith(("{", "[")):
            raise
        try:
            return _json(text)
        except DecodeError:
            raise yaml_error from None

"""Reading manifest files as `kubectl`/`istioctl` do: JSON (tab-indented too), YAML,
duplicate keys refused with the key and line, one clear error for anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilotfish_operator.api import VirtualService
from pilotfish_operator.sources.files import DirectorySource, FileError, load_documents
from pilotfish_operator.store import Store

VS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "orders", "namespace": "shop"},
    "spec": {
        "hosts": ["orders"],
        "http": [{"route": [{"destination": {"host": "orders", "subset": "blue"}, "weight": 100}]}],
    },
}
KEY = ("VirtualService", "shop", "orders")


def _subset(store: Store) -> str | None:
    vs = store.get(KEY)
    assert isinstance(vs, VirtualService)
    return vs.spec.http[0].route[0].destination.subset


def test_tab_indented_json_loads(tmp_path: Path) -> None:
    path = tmp_path / "vs.json"
    path.write_text(json.dumps(VS, indent="\t"))
    assert "\n\t" in path.read_text()  # the indentation PyYAML refuses
    assert load_documents(path) == [VS]


def test_json_numbers_stay_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e2 as a string; JSON says it is a number.
    path = tmp_path / "n.json"
    path.write_text('{"kind": "X", "n": 1e2}')
    assert load_documents(path) == [{"kind": "X", "n": 100.0}]


def test_json_in_a_yaml_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "vs.yaml"
    path.write_text(json.dumps(VS, indent="\t"))
    assert load_documents(path) == [VS]


def test_duplicate_yaml_key_names_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dr.yaml"
    path.write_text(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: orders}\nspec:\n  host: orders\n  host: payments\n"
    )
    with pytest.raises(FileError) as info:
        load_documents(path)
    assert str(info.value) == f"{path}: cannot read: line 6: duplicate key 'host'"


def test_duplicate_json_key_names_key_and_line(tmp_path: Path) -> None:
    # "name" appears in two objects legitimately; only the second "host" of spec repeats.
    path = tmp_path / "dr.json"
    path.write_text(
        '{\n\t"kind": "DestinationRule",\n\t"metadata": {"name": "orders"},\n'
        '\t"spec": {\n\t\t"subsets": [{"name": "blue"}],\n\t\t"host": "orders",\n'
        '\t\t"host": "payments"\n\t}\n}\n'
    )
    with pytest.raises(FileError) as info:
        load_documents(path)
    assert str(info.value) == f"{path}: cannot read: line 7: duplicate key 'host'"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.json", '{\n"kind": "X",\n}', "line 3, column 1: not valid JSON"),
        ("bad.yaml", "kind: X\nspec: [unclosed\n", "line 3, column 1: not valid YAML"),
        ("bad.yaml", '{\n\t"kind": [1,\n}', "line 2, column 1: not valid YAML"),
        ("scalar.yaml", "kind: X\n---\n(...!)\n", "line 3: not an object"),
        ("list.json", '[{"kind": "X"}, 5]', "line 1: not an object"),
    ],
)
def test_neither_yaml_nor_json_is_one_error_with_the_line(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FileError) as info:
        load_documents(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read: {expected}"), message
    assert "\n" not in message


def test_local_mode_keeps_a_file_with_a_duplicate_key_at_its_previous_objects(
    tmp_path: Path,
) -> None:
    store = Store()
    source = DirectorySource(tmp_path, store)
    path = tmp_path / "vs.json"
    path.write_text(json.dumps(VS, indent="\t"))
    source.scan()
    assert _subset(store) == "blue" and not source.file_errors

    text = json.dumps(VS, indent="\t").replace(
        '"subset": "blue"', '"subset": "blue", "subset": "green"'
    )
    path.write_text(text + "\n")  # another size: the scan sees the change
    source.scan()
    assert "duplicate key 'subset'" in source.file_errors[path]
    assert _subset(store) == "blue"  # neither value applied: the previous object stays

    path.write_text(json.dumps(VS, indent="\t").replace("blue", "green"))
    source.scan()
    assert _subset(store) == "green" and not source.file_errors


@pytest.mark.parametrize("name", ["empty.json", "empty.yaml"])
def test_an_empty_file_holds_no_objects(tmp_path: Path, name: str) -> None:
    # An editor may save an empty file first: no objects, no error.
    path = tmp_path / name
    path.write_text("\n")
    assert load_documents(path) == []


def test_a_yaml_merge_key_is_not_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("kind: X\nbase: &b {timeout: 1s}\nroute:\n  <<: *b\n  timeout: 2s\n")
    assert load_documents(path)[0]["route"] == {"timeout": "2s"}

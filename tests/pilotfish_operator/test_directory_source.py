"""Local mode's directory source sees every kind of change between two scans, though
an idle scan re-lists the tree only when a directory changed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from pilotfish_operator.sources.files import DirectorySource
from pilotfish_operator.store import Store


def _service(name: str, ns: str = "shop") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }
    )


def _names(store: Store) -> set[str]:
    return {obj.metadata.name for obj in store.of_kind("Service")}


def test_nothing_changed_means_no_change(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(_service("a"))
    source = DirectorySource(tmp_path, Store())
    assert source.scan()
    assert not source.scan()
    assert not source.scan()


def test_edits_creations_renames_and_removals_anywhere_in_the_tree_are_seen(
    tmp_path: Path,
) -> None:
    store = Store()
    source = DirectorySource(tmp_path, store)
    (tmp_path / "a.json").write_text(_service("a"))
    (tmp_path / "team").mkdir()
    source.scan()
    assert _names(store) == {"a"}

    # A new file in an existing subdirectory.
    (tmp_path / "team" / "b.json").write_text(_service("b"))
    assert source.scan() and _names(store) == {"a", "b"}

    # A new file in a new, nested subdirectory.
    (tmp_path / "team" / "deep").mkdir()
    (tmp_path / "team" / "deep" / "c.yaml").write_text(_service("c"))
    assert source.scan() and _names(store) == {"a", "b", "c"}

    # An in-place edit (no directory changes).
    (tmp_path / "team" / "deep" / "c.yaml").write_text(_service("c2"))
    assert source.scan() and _names(store) == {"a", "b", "c2"}

    # An editor's save: write a temporary file, rename it over the original.
    tmp = tmp_path / "team" / ".b.json.swp"
    tmp.write_text(_service("b2"))
    tmp.replace(tmp_path / "team" / "b.json")
    assert source.scan() and _names(store) == {"a", "b2", "c2"}

    # A file renamed to a name that is not config: its objects go.
    (tmp_path / "a.json").rename(tmp_path / "a.json.bak")
    assert source.scan() and _names(store) == {"b2", "c2"}

    # A whole subdirectory removed.
    for path in sorted((tmp_path / "team").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / "team").rmdir()
    assert source.scan() and _names(store) == set()
    assert not source.scan()


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not check():  # noqa: ASYNC110 (the store has no change event to await)
            await asyncio.sleep(0.02)


async def test_running_source_is_woken_by_changes_not_by_polling(tmp_path: Path) -> None:
    # Polls and rescans hourly: without change notifications nothing would be seen.
    store = Store()
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "a.json").write_text(_service("a"))
    source = DirectorySource(tmp_path, store, interval=3600, rescan=3600)
    task = asyncio.create_task(source.run())
    try:
        await _until(lambda: _names(store) == {"a"})
        (tmp_path / "team" / "a.json").write_text(_service("a2"))  # in place
        await _until(lambda: _names(store) == {"a2"})
        (tmp_path / "team" / "new").mkdir()
        await asyncio.sleep(0.3)  # the new directory is watched before its file comes
        (tmp_path / "team" / "new" / "b.yaml").write_text(_service("b"))
        await _until(lambda: _names(store) == {"a2", "b"})
        (tmp_path / "team" / "new" / "b.yaml").write_text(_service("b2"))
        await _until(lambda: _names(store) == {"a2", "b2"})
        (tmp_path / "team" / "a.json").unlink()
        await _until(lambda: _names(store) == {"b2"})
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

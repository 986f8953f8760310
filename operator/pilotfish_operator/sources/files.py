"""Local mode's config source: every *.yaml / *.yml / *.json file in a directory.

On Linux, inotify wakes a scan when something changed (`inotify.py`), with a slow
safety rescan; elsewhere the directory is polled. A scan re-lists the tree only when
a directory's mtime moved (a file created, removed or renamed), otherwise it stats
the known files; a changed file is re-read whole. A file
that does not parse is reported and its previous objects stay; objects that
disappear from a file are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..store import Key, Store
from .decode import DecodeError, decode
from .inotify import Watcher

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
SETTLE = 0.05
"""Seconds from a change notification to the scan: a writer may still be writing."""


class FileError(Exception):
    pass


def load_documents(path: Path, text: str | None = None) -> list[Mapping[str, Any]]:
    """The objects in one file (or `text` read from it); `kind: List` items are
    flattened. `*.json` is JSON, anything else YAML or JSON (`decode`)."""
    try:
        text = path.read_text() if text is None else text
        docs = decode(text, json_first=path.suffix == ".json")
    except (OSError, UnicodeDecodeError, DecodeError) as err:
        raise FileError(f"{path}: cannot read: {err}") from err
    out: list[Mapping[str, Any]] = []
    for doc in docs:
        if doc is None:
            continue
        if doc.get("kind") == "List":
            out.extend(item for item in doc.get("items") or [] if isinstance(item, Mapping))
        else:
            out.append(doc)
    return out


def config_files(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.rglob("*")) if p.suffix in SUFFIXES and p.is_file()]


def load_store(paths: list[str], store: Store | None = None) -> Store:
    """Objects of files and directories (`-`: standard input) applied to a store, for
    the commands that read manifests offline. A file that cannot be read raises."""
    store = store if store is not None else Store()
    for name in paths:
        path = Path(name)
        files = config_files(path) if path.is_dir() else [path]
        for f in files:
            text = sys.stdin.read() if name == "-" else None
            for doc in load_documents(f, text):
                store.apply(doc)
    return store


class DirectorySource:
    def __init__(
        self, directory: Path, store: Store, interval: float = 0.25, rescan: float = 10.0
    ) -> None:
        self.directory = directory
        self.store = store
        self.interval = interval
        """Seconds between polls without inotify."""
        self.rescan = rescan
        """Seconds between scans with inotify and no event (a change it cannot see: a
        network file system, a lost watch)."""
        self._watcher: Watcher | None = None
        self._watch_failed = False
        self._stamps: dict[Path, tuple[int, int]] = {}
        self._keys: dict[Path, set[Key]] = {}
        self.file_errors: dict[Path, str] = {}
        self._dirs: dict[str, int] = {}
        """Every directory of the tree -> its mtime when the listing was taken."""
        self._listing: list[Path] = []

    def _tree_changed(self) -> bool:
        if not self._dirs:
            return True
        for name, mtime in self._dirs.items():
            try:
                if os.stat(name).st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        return False

    def _relist(self) -> None:
        # Directory mtimes first: an entry added while listing moves them again.
        dirs = [self.directory, *(p for p in self.directory.rglob("*") if p.is_dir())]
        if self._watcher is not None and not self._watcher.watch(map(str, dirs)):
            self._watch_failed = True
        stamps: dict[str, int] = {}
        for d in dirs:
            try:
                stamps[str(d)] = os.stat(d).st_mtime_ns
            except OSError:
                stamps[str(d)] = -1  # gone meanwhile: relist next time
        self._dirs = stamps
        self._listing = config_files(self.directory)

    def _files(self) -> dict[Path, tuple[int, int]]:
        if self._tree_changed():
            self._relist()
        out = {}
        for path in self._listing:
            try:
                st = os.stat(path)
            except OSError:
                self._dirs.clear()  # removed since the listing: relist next scan
                continue
            out[path] = (st.st_mtime_ns, st.st_size)
        return out

    def scan(self) -> bool:
        """Apply what changed since the last scan; True if any file changed."""
        files = self._files()
        changed = False
        for path in self._stamps.keys() - files.keys():
            for key in self._keys.pop(path, set()):
                self.store.delete(key)
            self.file_errors.pop(path, None)
            changed = True
        for path, stamp in files.items():
            if self._stamps.get(path) == stamp:
                continue
            changed = True
            try:
                docs = load_documents(path)
            except FileError as err:
                log.error("%s (keeping its previous objects)", err)
                self.file_errors[path] = str(err)
                continue
            self.file_errors.pop(path, None)
            keys = {self.store.apply(doc) for doc in docs}
            claimed = set().union(*(k for p, k in self._keys.items() if p != path))
            for gone in self._keys.get(path, set()) - keys - claimed:
                self.store.delete(gone)  # unless it moved to another file
            self._keys[path] = keys
        self._stamps = files
        return changed

    async def run(self) -> None:
        self._watcher = Watcher.open()
        self._dirs.clear()  # the first scan re-lists, adding the watches
        woken = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            if self._watcher is not None:
                loop.add_reader(self._watcher.fd, woken.set)
            while True:
                self.scan()
                watcher = self._watcher
                if watcher is not None and self._watch_failed:
                    loop.remove_reader(watcher.fd)
                    watcher.close()
                    watcher = self._watcher = None
                if watcher is None:
                    await asyncio.sleep(self.interval)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self.rescan)
                await asyncio.sleep(SETTLE)
                woken.clear()
                watcher.drain()
        finally:
            if self._watcher is not None:
                loop.remove_reader(self._watcher.fd)
                self._watcher.close()
                self._watcher = None

"""Linux inotify through libc (no dependency): a readable file descriptor that
wakes the directory source when anything changes in the watched directories, so
an idle config directory costs no polling. Unavailable (not Linux, watch limit
reached) → `None`, and the caller polls."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Iterable

log = logging.getLogger(__name__)

# <sys/inotify.h>: a file written, created, deleted or moved, in or of the directory.
_MASK = (
    0x00000002  # IN_MODIFY
    | 0x00000004  # IN_ATTRIB
    | 0x00000008  # IN_CLOSE_WRITE
    | 0x00000040  # IN_MOVED_FROM
    | 0x00000080  # IN_MOVED_TO
    | 0x00000100  # IN_CREATE
    | 0x00000200  # IN_DELETE
    | 0x00000400  # IN_DELETE_SELF
    | 0x00000800  # IN_MOVE_SELF
)
_NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC


class Watcher:
    """One inotify instance; `watch()` the directories of a listing (again after
    every re-listing), `drain()` when `fd` is readable."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self.fd = fd

    @classmethod
    def open(cls) -> Watcher | None:
        name = ctypes.util.find_library("c")
        if name is None or not hasattr(os, "O_NONBLOCK"):
            return None
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            fd = libc.inotify_init1(_NONBLOCK_CLOEXEC)
        except (OSError, AttributeError):
            return None
        return cls(libc, fd) if fd >= 0 else None

    def watch(self, directories: Iterable[str]) -> bool:
        """Watch each directory (again: a directory re-created under the same name is a
        new one; re-adding a watched one is a no-op); False if one could not be (the
        caller then polls)."""
        for d in directories:
            if self._libc.inotify_add_watch(self.fd, os.fsencode(d), _MASK) < 0:
                log.warning("cannot watch %s (errno %d): polling", d, ctypes.get_errno())
                return False
        return True

    def drain(self) -> None:
        """Discard the pending events: the source rescans whatever they were."""
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)

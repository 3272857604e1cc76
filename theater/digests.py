"""Which stored component a file holds, remembered by the file's stat while it is unchanged.

A componentize-py component is 18 MB: reading, sending and hashing it again at each start
cost 60 ms of an 85 ms spawn. A client that learnt (from the server's answer) the SHA-256 of
a file's bytes names that instead, as long as the file's device, inode, size and times are the
ones it had when it was read.

A change within the same clock tick as the read could leave all of those equal (the race git
calls "racy"): a file is remembered only once its last change (ctime, which no one can set
back) is older than ``SETTLED``, so any later change shows in its ctime.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path

Stamp = tuple[int, int, int, int, int]

SETTLED = 1.0           # seconds since its last change before a file is remembered
KEPT = 64               # files remembered; the least recently used is forgotten first


def stamp(path: Path) -> Stamp | None:
    """What changes when the file does: device, inode, size, mtime, ctime (None if unreadable)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class FileDigests:
    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._known: OrderedDict[Path, tuple[Stamp, str]] = OrderedDict()

    def get(self, path: Path) -> str | None:
        """The digest remembered for ``path``, if the file is still the one it was taken of."""
        known = self._known.get(path)
        if known is None:
            return None
        if stamp(path) != known[0]:
            del self._known[path]
            return None
        self._known.move_to_end(path)
        return known[1]

    def remember(self, path: Path, before: Stamp | None, digest: str) -> None:
        """``digest`` is of the bytes read from ``path`` after ``before`` was taken: kept if the
        file did not change meanwhile and its last change is settled."""
        if before is None or stamp(path) != before or time.time_ns() - before[4] < SETTLED * 1e9:
            return
        self._known[path] = (before, digest)
        self._known.move_to_end(path)
        if len(self._known) > self.kept:
            self._known.popitem(last=False)

    def forget(self, path: Path) -> None:
        self._known.pop(path, None)

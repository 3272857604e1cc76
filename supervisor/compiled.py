"""A compiled component on its way into the cache, written through descriptors the server opened.

Workers and the fork server (the server's user, root under ``--user``) deserialize what the
cache holds: native code that wasmtime trusts. So only the server's user writes there. The
compile process runs as the workers' user, and any other process of that user could replace
a file it wrote by name; instead it gets two descriptors of files the server made (0600, its
own, beside where they go) and writes its output through them. Once it has succeeded, the
server renames them into place, readable by the workers' group under ``--user``; otherwise it
removes them. Leftovers of a server that died meanwhile go at the next start (``clear``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from theater.paths import Home

PREFIX = ".compiling-"


class Compiled:
    def __init__(self, home: Home, sha: str, fuel: bool, group: int | None) -> None:
        self.group = group
        self.final = [home.compiled(sha, fuel), home.shape(sha)]
        self.parts: list[Path] = []
        self.fds: list[int] = []
        try:
            for path in self.final:
                _make_dirs(home.cache, path.parent, group)
                fd, name = tempfile.mkstemp(prefix=PREFIX, dir=path.parent)
                self.fds.append(fd)
                self.parts.append(Path(name))
        except OSError:
            self.discard()
            raise

    def close_fds(self) -> None:
        """Ours: the compile process has its own copies."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def publish(self) -> None:
        """Into the cache, shape last (what is looked for first is complete when it is there)."""
        self.close_fds()
        for part, final in zip(self.parts, self.final, strict=True):
            if self.group is not None:
                os.chown(part, -1, self.group)
                os.chmod(part, 0o640)
            os.replace(part, final)
        self.parts = []

    def discard(self) -> None:
        self.close_fds()
        for part in self.parts:
            part.unlink(missing_ok=True)
        self.parts = []


def clear(home: Home) -> None:
    """What compiles cut short by a dead server left behind."""
    for part in home.cache.rglob(f"{PREFIX}*"):
        part.unlink(missing_ok=True)


def _make_dirs(top: Path, path: Path, group: int | None) -> None:
    """``path`` under ``top``, each new folder traversable by the workers' group when there is one."""
    if path == top or path.is_dir():
        return
    _make_dirs(top, path.parent, group)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
        if group is not None:
            os.chown(path, -1, group)
            os.chmod(path, 0o2750)

"""A compiled component on its way into the cache, written through descriptors the server opened.

Workers and the fork server (the server's user, root under ``--user``) deserialize what the
cache holds: native code that wasmtime trusts. So only the server's user writes there. The
compile process runs as the workers' user, and any other process of that user could replace
a file it wrote by name; instead it gets two descriptors of files the server made (0600, its
own, beside where they go) and writes its output through them. Once it has succeeded, the
server renames them into place, readable by the workers' group under ``--user``; otherwise it
removes them. At start (``settle``) the cache must hold only what the server's user made.

What this does not give: the compile process's output is trusted. A component that took over
Cranelift while it compiled writes what it likes through those descriptors (or a child of it
does, later): such a compromise is a compromise of the cache, as wasmtime documents.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from theater.compiling import PREFIX
from theater.paths import Home

log = logging.getLogger("theater.server")


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


def settle(home: Home) -> None:
    """At start, before any compile or fork: anything in the cache that is not the server
    user's own file or folder (a file of the workers' user, as an older version let the
    compile process write there; a symlink) means none of it can be trusted, and all of it
    can be compiled again: the cache goes. So do the leftovers of compiles a dead server cut
    short."""
    cache = home.cache
    entries = [cache, *cache.rglob("*")]
    if not all(_ours(p) for p in entries):
        log.warning("the compiled-component cache %s holds files the server's user did not make; "
                    "emptied (components compile again)", cache)
        shutil.rmtree(cache)            # never follows a symlink
        cache.mkdir(mode=0o700)
        return
    for part in entries:
        if part.name.startswith(PREFIX):
            part.unlink(missing_ok=True)


def _ours(path: Path) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return True
    return st.st_uid == os.getuid() and (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))


def _make_dirs(top: Path, path: Path, group: int | None) -> None:
    """``path`` under ``top``, each folder traversable by the workers' group when there is one
    (one that ``theater replay`` made has the operator's umask)."""
    if path == top:
        return
    _make_dirs(top, path.parent, group)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    if group is not None:
        os.chown(path, -1, group)
        os.chmod(path, 0o2750)

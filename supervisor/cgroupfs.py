"""Reading and writing cgroupfs: one value per write, files that may vanish, directories the
kernel releases a moment after their last task exits."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import time
from pathlib import Path

log = logging.getLogger("theater.server")


def write(path: Path, value: str | int) -> None:
    """One write() per value: cgroupfs parses each write separately (one pid per write)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def keyed(text: str | None, key: str) -> int | None:
    """Value of ``key N`` in a flat-keyed cgroup file (memory.events, memory.oom_control)."""
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return None


def integer(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def rmdir(path: Path, timeout: float) -> bool:
    """rmdir, retrying on EBUSY: the kernel releases a cgroup a moment after its last task exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                return False
        time.sleep(0.01)


def remove_tree(parent: Path, kill: bool = False) -> None:
    """Removes a group and the groups in it; ``kill``: first SIGKILLs every process still in
    them (what a server that died left: a program an actor ran, in a session of its own, outlives
    its worker only until the next server starts)."""
    if kill:
        pids = {int(p) for f in parent.rglob("cgroup.procs") for p in (read(f) or "").split() if p.isdigit()}
        for pid in pids - {os.getpid()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if pids:
            log.warning("killed %d processes left in %s by a server that died", len(pids), parent)
    with contextlib.suppress(OSError):
        for child in parent.iterdir():
            if child.is_dir():
                rmdir(child, 1.0 if kill else 0.2)
    rmdir(parent, 0.5)


def unescape(field_: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)

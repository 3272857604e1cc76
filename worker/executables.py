"""The files a granted program needs the right to execute, and no others.

Under Landlock, ``execve`` needs the EXECUTE right on the program and, for a dynamically
linked ELF, on its interpreter (the loader, which the kernel opens for execution too); the
shared libraries the loader maps need only READ. A script needs it on the interpreter its
``#!`` line names (and on ``/usr/bin/env``'s program, found on the commands' PATH). So a
grant of ``find`` makes ``find`` and the loader executable, not every program under
``/usr/lib`` that ``find -exec`` could otherwise start.
"""

from __future__ import annotations

import os
import shutil
import struct
from typing import BinaryIO

_PT_INTERP = 3
_MAX_INTERP = 4096
# Programs that run their own parts from a folder of their own (relative to their prefix): git
# runs `git pack-objects`, `git maintenance`... as <prefix>/lib/git-core/git, a copy of itself.
HELPERS = {"git": ("lib/git-core", "libexec/git-core")}


def needed(program: str, path: str) -> list[str]:
    """Real paths of ``program`` and what running it executes (a loader, a script's interpreter,
    transitively; the folder it runs its own parts from, ``HELPERS``); ``path``: where ``env``
    looks for a program."""
    out: list[str] = []
    real = os.path.realpath(program)
    prefix = os.path.dirname(os.path.dirname(real))
    todo = [real, *(d for d in (os.path.join(prefix, h) for h in HELPERS.get(os.path.basename(real), ()))
                    if os.path.isdir(d))]
    while todo and len(out) < 8:        # a loop of #! lines ends
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        for q in _runs(p, path):
            todo.append(os.path.realpath(q))
    return out


def _runs(path: str, search: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            head = f.read(256)
            if head.startswith(b"\x7fELF"):
                interp = _interpreter(f, head)
                return [interp] if interp else []
    except OSError:
        return []
    if not head.startswith(b"#!"):
        return []
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        return []
    if os.path.basename(words[0]) == "env":        # env [-S] [-i] [NAME=value]... program
        program = next((w for w in words[1:] if not w.startswith("-") and "=" not in w), None)
        found = shutil.which(program, path=search) if program else None
        return [words[0], *([found] if found else [])]
    return [words[0]]


def _interpreter(f: BinaryIO, head: bytes) -> str | None:
    """The PT_INTERP of an ELF file (64- or 32-bit, either byte order), if it has one."""
    wide, order = len(head) > 5 and head[4] == 2, "<" if len(head) > 5 and head[5] == 1 else ">"
    if len(head) < (0x40 if wide else 0x34):
        return None
    if wide:
        phoff, = struct.unpack_from(order + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x36)
    else:
        phoff, = struct.unpack_from(order + "I", head, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x2A)
    for i in range(min(phnum, 256)):
        f.seek(phoff + i * phentsize)
        entry = f.read(phentsize)
        if len(entry) < (0x30 if wide else 0x20):
            return None
        p_type, = struct.unpack_from(order + "I", entry, 0)
        if p_type != _PT_INTERP:
            continue
        if wide:
            offset, = struct.unpack_from(order + "Q", entry, 0x08)
            size, = struct.unpack_from(order + "Q", entry, 0x20)
        else:
            offset, = struct.unpack_from(order + "I", entry, 0x04)
            size, = struct.unpack_from(order + "I", entry, 0x10)
        f.seek(offset)
        name = f.read(min(size, _MAX_INTERP)).split(b"\0", 1)[0]
        return name.decode("utf-8", "replace") or None
    return None

"""What the compile step (``python -m worker compile``, worker/compiler.py) tells whoever started
it, the server (supervisor/compiles.py) or the replayer (worker/replaycompile.py): how it ended,
read the same way by both, and how its unfinished output is named in the cache.

It prints one JSON line, ``{"ok": true, ...}`` (exit 0) or ``{"ok": false, "error"}`` for a
component that is not valid (EXIT_INVALID); out of memory it exits EXIT_MEMORY (Python's
MemoryError), or Rust's allocator aborts it (SIGABRT, saying "memory allocation ... failed").
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Literal

import orjson

EXIT_INVALID = 2
EXIT_MEMORY = 3
# Files a compile writes beside their places in the cache until it has succeeded: what a
# compile cut short leaves, and the server's start removes (supervisor/compiled.py).
PREFIX = ".compiling-"

Ending = Literal["ok", "invalid", "memory", "failed"]


def ending(status: int, out: bytes) -> tuple[Ending, dict[str, Any]]:
    """How a compile process with exit ``status`` (negative: killed by that signal) that said
    ``out`` ended, and its JSON line ({} if none)."""
    said = _last_json(out)
    if status == 0 and said.get("ok"):
        return "ok", said
    if status == EXIT_INVALID and "error" in said:
        return "invalid", said
    if status == EXIT_MEMORY or (status == -signal.SIGABRT and b"memory allocation" in out):
        return "memory", said
    return "failed", said


def _last_json(out: bytes) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        if line.startswith(b"{"):
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(line)
                return value if isinstance(value, dict) else {}
    return {}

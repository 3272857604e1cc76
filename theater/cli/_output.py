"""How the CLI talks back: one line on stderr for an error, an exit status per kind of failure."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from ..errors import TheaterError

# One place maps outcomes to exit statuses (see `theater --help`).
EXIT = {
    "usage": 2, "manifest": 2, "component": 2, "protocol": 2,
    "not_found": 3,
    "unreachable": 4,
    "verify": 5,
    "timeout": 6,
    "refused": 7,
    "actor_failed": 1,
    "error": 1,
}


def exit_status(exc: TheaterError) -> int:
    return EXIT.get(exc.code, 1)


def error(message: str) -> None:
    print(f"theater: {message}", file=sys.stderr, flush=True)


note = error       # something the user should know that is not an error: said the same way


class Progress:
    """What a start waits for, on one stderr line rewritten in place ("compiling counter.wasm
    (18.4 MB)... 12s"): for a terminal only, so scripts and pipes see nothing of it."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, push: dict[str, Any]) -> None:
        if sys.stderr.isatty():
            print(f"\rtheater: compiling {push.get('component')} ({push.get('bytes', 0) / 1e6:.1f} MB)... "
                  f"{push.get('seconds', 0):.0f}s", end="", file=sys.stderr, flush=True)
            self.shown = True

    def done(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)


def emit_json(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def emit_json_line(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value) + b"\n")
    sys.stdout.flush()


def emit_bytes(data: bytes) -> None:
    """Raw bytes to stdout; a newline is added only for a terminal, so pipes get the bytes as they are."""
    sys.stdout.buffer.write(data)
    if sys.stdout.isatty() and not data.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())

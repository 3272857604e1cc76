"""How the CLI talks back: one line on stderr for an error, an exit status per kind of failure.

Everything printed for a human goes through ``line`` (or ``table``, ``error``, ``emit_bytes``
on a terminal), which shows control characters as escapes: actor-controlled text (log lines,
errors, names, event types) must not drive the operator's terminal (issue 16, finding 8:
``\x1b]0;pwned\x07\x1b[2J`` retitled and cleared it). JSON output stays exact (JSON escapes
C0 itself); ``emit_bytes`` into a pipe stays exact.
"""

from __future__ import annotations

import datetime
import errno
import os
import sys
import unicodedata
from typing import IO, Any

import orjson

from ..errors import TheaterError
from ..escapes import safe

# One place maps outcomes to exit statuses (see `theater --help`).
EXIT = {
    "usage": 2, "manifest": 2, "component": 2, "protocol": 2,
    "not_found": 3, "no_component": 3,
    "unreachable": 4,
    "verify": 5,
    "timeout": 6,
    "refused": 7,
    "actor_failed": 1,
    "error": 1,
}


def line(text: Any, file: IO[str] | None = None, colour: str | None = None) -> None:
    """One line for a human, on stdout (or ``file``); in ``colour`` (a COLOURS key) on a terminal."""
    out = file or sys.stdout
    print(paint(safe(text), colour, out), file=out, flush=True)


# Colour only for a terminal, and not when NO_COLOR is set (https://no-color.org) or the
# terminal says it has none: pipes, files and scripts get plain text.
COLOURS = {"ok": "32", "bad": "31", "busy": "33", "dim": "2", "bold": "1"}
# What each actor status looks like.
STATUS_COLOURS = {"running": "ok", "failed": "bad", "starting": "busy", "restarting": "busy", "stopping": "busy",
                  "exited": "dim", "stopped": "dim"}


def colour_on(stream: IO[str]) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, colour: str | None, stream: IO[str] | None = None) -> str:
    """``text`` (already safe) in ``colour`` if ``stream`` (stdout) shows colour; else as it is."""
    if colour is None or not colour_on(stream or sys.stdout):
        return text
    return f"\x1b[{COLOURS[colour]}m{text}\x1b[0m"


def exit_status(exc: TheaterError) -> int:
    return EXIT.get(exc.code, 1)


def error(message: str) -> None:
    print(f"{paint('theater:', 'bad', sys.stderr)} {safe(message)}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """Something the user should know that is not an error: said the same way, without the alarm."""
    line(f"theater: {message}", sys.stderr)


def os_problem(e: OSError, doing: str = "") -> str:
    """An OSError in words, naming the path ("cannot write /x/y: No such file or directory"),
    never as ``[Errno 2] ...``."""
    where = f"{e.filename}: " if e.filename is not None else ""
    why = e.strerror or type(e).__name__
    if e.errno == errno.EROFS:
        why = "read-only file system"
    return f"{doing + ' ' if doing else ''}{where}{why}"


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
    """Bytes to stdout: exactly as they are into a pipe or file; on a terminal as text with its
    control characters escaped, and ending in a newline."""
    if sys.stdout.isatty():
        text = safe(data.decode("utf-8", errors="backslashreplace"), multiline=True)
        print(text, end="" if text.endswith("\n") else "\n", flush=True)
        return
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def table(rows: list[list[Any]], header: list[str], status_column: int | None = None) -> None:
    """Aligned columns; on a terminal the header is bold and ``status_column`` coloured by status."""
    cells = [[safe(c) for c in r] for r in [header, *rows]]
    widths = [max(width(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        shown = [c + " " * (w - width(c)) for c, w in zip(r, widths, strict=True)]
        if n == 0:
            shown = [paint(c, "bold") for c in shown]
        elif status_column is not None:
            shown[status_column] = paint(shown[status_column], STATUS_COLOURS.get(r[status_column].strip()))
        print("  ".join(shown).rstrip(), flush=True)


# Unicode categories a terminal gives no column: marks that combine with the character before
# them, and format characters (zero-width space and joiner).
_ZERO_WIDTH = ("Mn", "Me", "Cf")


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal: wide (CJK) characters two, marks and format
    characters (combining accents, Thai vowel signs, zero-width spaces) none."""
    return sum(0 if unicodedata.category(c) in _ZERO_WIDTH else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def when(time_ns: int) -> str:
    """A time stamp for people: local time to the millisecond ("2026-12-01 17:58:54.123")."""
    t = datetime.datetime.fromtimestamp(time_ns / 1e9)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def new_screen(first: bool) -> None:
    """Clears a terminal for the next screen (`top --watch`): the one escape sequence the CLI
    writes on purpose, and only to a terminal; into a pipe or a file, screens are parted by a
    blank line."""
    if sys.stdout.isatty():
        print("\x1b[2J\x1b[H", end="", flush=True)
    elif not first:
        print(flush=True)

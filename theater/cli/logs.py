"""``theater logs``: an actor's log lines, with their times, from its chain.

An actor's log is in its chain: each ``runtime.log`` call, and each write of a WASI
component to its stdout or stderr, is an event with its time. So a stopped actor's log is
there as long as its chain is, and `--follow` misses no line across reconnects.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..bodies import body_of
from ..errors import NotFound
from ..events import Event
from . import _output
from ._context import Context, actor_arg, count
from .chains import follow, short, stored, tail

LOG = "theater:simple/runtime/log"
# What a WASI component writes to stdout and stderr: log lines too.
OUTPUT = ("wasi:cli/stdout/write", "wasi:cli/stderr/write")
TYPES = [LOG, *OUTPUT]


def log_line(ev: Event) -> str:
    """The text of a log event (invalid UTF-8 replaced, one trailing newline dropped); data of
    another shape (a worker writes its own events) as what it is, shortened."""
    d = body_of(ev.data)
    given = d.get("input") if isinstance(d, dict) else None
    text: Any = given[0] if isinstance(given, list) and given else None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.removesuffix("\n") if isinstance(text, str) else short(d)


def stream(ev: Event) -> str:
    return "stderr" if ev.type == OUTPUT[1] else "stdout" if ev.type == OUTPUT[0] else "log"


def logs(args: argparse.Namespace, ctx: Context) -> int:
    """Show an actor's log lines with their times: what it passed to runtime.log, and what a
    WASI component wrote to stdout or stderr. Works for stopped actors too (their chains
    stay), and without a server (not with --follow).

    --tail N shows only the last N lines; --follow (-f) keeps printing new ones. --json prints
    one object per line: {"seq", "time_ns", "time", "stream": "log" | "stdout" | "stderr", "line"}.
    """
    if args.tail:
        found, since = tail(ctx, args.actor, TYPES, args.tail)
    else:
        found = stored(ctx, args.actor, 0, None, TYPES)
        since = found[-1].seq + 1 if found else 0
    for ev in found:
        _show(ev, ctx.json)
    if args.follow:
        _say_if_not_running(ctx, args.actor)
        for ev in follow(ctx, args.actor, since, TYPES):
            _show(ev, ctx.json)
    return 0


def _say_if_not_running(ctx: Context, actor: str) -> None:
    """Following an actor that is not running waits for lines that may never come: said, once."""
    try:
        status = ctx.client.inspect(actor)["status"]
    except NotFound:
        status = "stopped"
    if status in ("failed", "exited", "stopped"):
        _output.line(f"actor {actor} is {status}: waiting for new lines if it is started again "
                     f"(Ctrl-C to stop)", sys.stderr)


def _show(ev: Event, as_json: bool) -> None:
    text = log_line(ev)
    if as_json:
        _output.emit_json_line({"seq": ev.seq, "time_ns": ev.time_ns, "time": _output.when(ev.time_ns),
                                "stream": stream(ev), "line": text})
    else:
        _output.line(f"{_output.when(ev.time_ns)}  {text}", colour="bad" if stream(ev) == "stderr" else None)


def _logs_args(p: argparse.ArgumentParser) -> None:
    actor_arg(p)
    p.add_argument("--tail", type=count(1), metavar="N", help="only the last N lines")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines as they are logged")


COMMANDS = {"logs": (logs, "show an actor's log lines, with their times", _logs_args)}

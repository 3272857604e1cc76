"""``theater run``: one actor, start to finish, with an embedded server if none is running."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

from ..errors import TheaterError, Unreachable
from ..events import decode_data, readable
from . import _output
from ._context import Context
from .actors import start_with_progress
from .chains import follow, summary

LOG = "theater:simple/runtime/log"
# What a WASI component writes to stdout and stderr: shown as log lines too.
OUTPUT = ("wasi:cli/stdout/write", "wasi:cli/stderr/write")
# How long an embedded server may take to come up (imports, chain process, fork server).
EMBEDDED_START = 20.0


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Run one actor and wait for its end: print its log lines (stderr) and, with --events, every
    event; exit 0 with the data it passed to runtime.shutdown on stdout, or 1 with its error.

    If no server is running at the home, one is started for the duration of the run (its log
    is in $THEATER_HOME/logs/server.log) and stopped afterwards. Ctrl-C stops the actor.
    --json prints one JSON object per line: {"log": ...}, {"event": ...}, {"result": ...}.
    """
    embedded = _ensure_server(ctx)
    actor = None
    try:
        state = Path(args.state).read_bytes() if args.state else None
        info = start_with_progress(ctx, args.manifest, state)
        actor, name = info["id"], info["name"]
        if not ctx.json:
            _output.line(f"[theater] started {name} {actor}", sys.stderr)
        return _watch(args, ctx, actor, name)
    except KeyboardInterrupt:
        return 130
    finally:
        if actor is not None:
            with contextlib.suppress(TheaterError):
                ctx.client.stop(actor)
        if embedded is not None:
            ctx.close()
            embedded.terminate()
            try:
                embedded.wait(15)
            except subprocess.TimeoutExpired:
                embedded.kill()


def _watch(args: argparse.Namespace, ctx: Context, actor: str, name: str) -> int:
    for ev in follow(ctx, actor, 0, []):
        body = decode_data(ev.data)
        if ev.type == LOG or ev.type in OUTPUT:
            line = body["input"][0]
            if isinstance(line, bytes):
                line = line.decode("utf-8", "replace").rstrip("\n")
            if ctx.json:
                _output.emit_json_line({"log": line, "actor": actor})
            else:
                _output.line(f"[{name}] {line}", sys.stderr)
        elif args.events:
            if ctx.json:
                _output.emit_json_line({"event": ev.to_json()})
            else:
                _output.line(f"[{name}] {ev.seq:4d} {ev.type} {summary(ev)}", sys.stderr)
        if ev.type != "lifecycle/exit" or body.get("action") == "restart":
            continue        # (a failure its restart policy answers with a restart: keep watching)
        data = body.get("data")
        if body.get("kind") == "abnormal":
            if ctx.json:
                _output.emit_json_line({"result": None, "error": body.get("error") or body.get("reason")})
            else:
                _output.error(f"actor {name} failed: {body.get('error') or body.get('reason')}")
            return 1
        if ctx.json:
            _output.emit_json_line({"result": readable(data) if data is not None else None})
        elif data is not None:
            _output.emit_bytes(data)
        return 0
    return 0


def _ensure_server(ctx: Context) -> subprocess.Popen[bytes] | None:
    """None if a server answers at the home; else starts one and returns its process."""
    try:
        ctx.client.ping()
        return None
    except Unreachable:
        ctx.close()
    ctx.home.ensure()
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "--home", str(ctx.home.root),
                             "--log-level", "warning"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + EMBEDDED_START
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unreachable(f"the embedded server exited with status {proc.returncode} "
                              f"(see {ctx.home.logs / 'server.log'})")
        try:
            ctx.client.ping()
            return proc
        except Unreachable:
            ctx.close()
            time.sleep(0.05)
    proc.kill()
    raise Unreachable(f"the embedded server did not start within {EMBEDDED_START:g}s")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="path to the actor's manifest.toml")
    p.add_argument("--events", action="store_true", help="print every event, not only log lines")
    p.add_argument("--state", metavar="FILE", help="initial state bytes (instead of the manifest's init_state)")


COMMANDS = {"run": (run, "run one actor to its end (starts a server if needed)", _run_args)}

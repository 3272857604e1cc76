"""``theater run``: one actor, start to finish, with an embedded server if none is running."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..bodies import body_of
from ..errors import TheaterError, Unreachable, UsageError
from ..events import readable
from . import _output, logs
from ._context import Context, read_input
from .actors import checked_manifest, start_with_progress
from .chains import follow, summary

# How long an embedded server may take to come up (imports, chain process, fork server).
EMBEDDED_START = 20.0
# How long an interrupted run waits for its actor to stop (its shutdown timeout, and then some).
STOP_WAIT = 30.0


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Run one actor and wait for its end: print its log lines (stderr) and, with --events, every
    event; exit 0 with the data it passed to runtime.shutdown on stdout, or 1 with its error.

    If no server is running at the home, one is started for the duration of the run (its log
    is in $THEATER_HOME/logs/server.log) and stopped afterwards; it is ephemeral: it brings back
    no saved actor and saves none. Ctrl-C stops the actor (then that server).
    --json prints one JSON object per line: {"log": ...}, {"event": ...}, {"result": ...}.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):     # ended another way than Ctrl-C: clean up the same
        signal.signal(sig, _interrupt)
    manifest = checked_manifest(args.manifest)          # before a server is started for it
    state = read_input(args.state, "--state") if args.state else None
    embedded = _ensure_server(ctx)
    actor = None
    try:
        info = start_with_progress(ctx, args.manifest, state)
        actor, name = info["id"], info["name"]
        if not ctx.json:
            # an actor that serves messages runs until it shuts itself down: say how to end it, and
            # how to reach it meanwhile
            _output.line(f"[theater] started {name} {actor} (it runs until it ends; Ctrl-C stops it)", sys.stderr)
            if manifest.has_handler("message-server"):
                _output.line(f"[theater] message it from another terminal: {_cli(ctx)} message {name} TEXT --request",
                             sys.stderr)
        return _watch(args, ctx, actor, name)
    except KeyboardInterrupt:
        return 130
    finally:
        if actor is not None:
            with contextlib.suppress(TheaterError, KeyboardInterrupt):
                ctx.client.call("stop", actor=actor, timeout=STOP_WAIT)
        if embedded is not None:
            ctx.close()
            embedded.terminate()
            try:
                embedded.wait(15)
            except subprocess.TimeoutExpired:
                embedded.kill()


def _cli(ctx: Context) -> str:
    """``theater``, with what another terminal needs to reach the same server (it may lack this
    one's THEATER_HOME)."""
    words = ["theater"]
    if ctx.home.root != Path.home() / ".theater":
        words += ["--home", str(ctx.home.root)]
    if ctx.server:
        words += ["--server", ctx.server]
    return shlex.join(words)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _watch(args: argparse.Namespace, ctx: Context, actor: str, name: str) -> int:
    for ev in follow(ctx, actor, 0, []):
        body = body_of(ev.data)
        if ev.type in logs.TYPES:
            line = logs.log_line(ev)
            if ctx.json:
                _output.emit_json_line({"log": line, "actor": actor})
            else:
                _output.line(f"[{name}] {line}", sys.stderr)
        elif args.events:
            if ctx.json:
                _output.emit_json_line({"event": ev.to_json()})
            else:
                _output.line(f"[{name}] {ev.seq:4d} {ev.type} {summary(ev)}", sys.stderr)
        if ev.type != "lifecycle/exit" or not isinstance(body, dict) or body.get("action") == "restart":
            continue        # (a failure its restart policy answers with a restart: keep watching)
        data, error = body.get("data"), body.get("error") or body.get("reason")
        if body.get("kind") == "abnormal":
            if ctx.json:
                _output.emit_json_line({"result": None, "error": readable(error)})
            else:
                _output.error(f"actor {name} failed: {error}")
            return 1
        if ctx.json:
            _output.emit_json_line({"result": readable(data) if data is not None else None})
        elif isinstance(data, bytes):
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
    try:
        ctx.home.ensure()
    except OSError as e:
        raise UsageError(_output.os_problem(e, f"cannot make a home at {ctx.home.root}:")) from None
    # Its own session: Ctrl-C on the terminal reaches only us, and we stop the actor, then it (a
    # server that got the Ctrl-C too was already stopping, and the actor's stop waited for nothing).
    # Ephemeral: what it ran is not saved, so no later server on this home brings it back.
    # What it says on stderr is kept aside: if it cannot start, its reason becomes our one line.
    said = tempfile.TemporaryFile()  # noqa: SIM115 - written by the server for as long as it runs
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "--home", str(ctx.home.root),
                             "--log-level", "warning", "--ephemeral"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=said, start_new_session=True)
    deadline = time.monotonic() + EMBEDDED_START
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said.seek(0)
            lines = said.read().decode(errors="replace").strip().splitlines()
            why = (lines[-1].removeprefix("theater-server: ") if lines else
                   f"it exited with status {proc.returncode} (see {ctx.home.logs / 'server.log'})")
            raise (UsageError if proc.returncode == 2 else Unreachable)(f"the embedded server did not start: {why}")
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

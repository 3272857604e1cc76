"""``theater replay``: run an actor's recorded calls again and compare, event by event."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from typing import Any

import orjson

from ..errors import TheaterError, Timeout, from_wire
from . import _output
from ._context import Context
from .chains import settle

# A replay compiles and runs a whole chain: it has this long unless --timeout says otherwise.
REPLAY_TIMEOUT = 600.0
# What Rust says before it aborts a process that could not get memory (wasmtime, at the data
# rlimit), and what the replayer says of each limit it sets (worker/replaylimits.py).
_NO_MEMORY = re.compile(r"memory allocation of (\d+) bytes failed")
_HELD = re.compile(r"^held to its (.+?):", re.MULTILINE)
# What the replayer says of a sandbox layer this machine lacks (worker/replaysandbox.py).
_MISSING = re.compile(r"^sandbox layer .+ is not in force: .+$", re.MULTILINE)


def replay(args: argparse.Namespace, ctx: Context) -> int:
    """Replay an actor offline: instantiate its component afresh for each incarnation in its
    chain, make every recorded call again, answer every host call with its recorded output,
    and compare each event the actor produces with the record by hash. Reports the first
    divergence (exit 5). A call the record shows cut short by wall-clock time (a timeout, a
    stop) or by the death of its worker (SIGKILL, the OOM killer, a crash) cannot be reproduced:
    it is replayed as far as its record goes, then the replay of that incarnation ends there,
    and says so. A call that runs 20 times longer than it did when recorded (at least 5 s) has
    diverged.

    Each incarnation is held to the memory limits its record says the actor had (its linear
    memory, and the replayer's process, by process_memory beyond what it holds), else to the
    home's defaults; a replay that fails at one says which (exit 1). A record's process_memory
    is held to half the memory the machine has free.

    A component not yet in the home's cache is compiled as the server compiles it, in a process
    of its own within [compile] memory and timeout of server.toml (a stop at either: exit 1),
    into the cache when it is the user's own. The replayer confines itself, once it has read
    the chain and compiled the components and before it runs any of the actor's code, as a
    worker does: no capabilities, no_new_privs, no core dumps; a network namespace of its own,
    a Landlock view that reads nothing of the home and writes nowhere, the workers' seccomp
    allow-list (docs/isolation.md). A layer this machine lacks is left out, and said;
    --no-sandbox leaves out those three.

    Works on the home's store (ACTOR) or on an export (--file), with the home's copy of the
    component or --component FILE. Needs no server. It may take 600 s unless --timeout says.
    """
    cmd = [sys.executable, "-m", "worker", "replay", "--home", str(ctx.home.root)]
    if args.actor:
        settle(ctx)
        cmd.append(args.actor)
    if args.file:
        cmd += ["--file", args.file]
    if args.component:
        cmd += ["--component", args.component]
    if args.no_sandbox:
        cmd.append("--no-sandbox")
    limit = ctx.timeout if ctx.timeout_given else REPLAY_TIMEOUT
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=limit)
    except subprocess.TimeoutExpired:
        raise Timeout(f"the replay did not finish within {limit:g}s (--timeout sets the limit)") from None
    for missing in _MISSING.findall(proc.stderr.decode(errors="replace")):
        _output.note(f"replay: {missing}")
    try:
        report = orjson.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, orjson.JSONDecodeError):
        said = proc.stderr.decode(errors="replace").strip().splitlines()
        text = proc.stderr.decode(errors="replace")
        if proc.returncode < 0 and (m := _NO_MEMORY.search(text)):
            held = _HELD.findall(text)
            raise TheaterError(f"the replay reached its {held[-1] if held else 'memory limit'}: wasmtime could not "
                               f"get {m[1]} more bytes and stopped the replayer") from None
        if proc.returncode == -signal.SIGSYS:
            raise TheaterError("the replayer made a system call its sandbox forbids, and was killed (seccomp): "
                               "a hostile component escaping wasmtime, or a call the allow-list lacks "
                               "(--no-sandbox replays without it)") from None
        why = said[-1][:300] if said else f"it ended with status {proc.returncode}"
        raise TheaterError(f"the replayer failed: {why}") from None
    if "code" in report:
        raise from_wire(report["code"], report["error"])
    if ctx.json:
        _output.emit_json(report)
    elif report["ok"]:
        _output.line(f"ok      {report['actor']}  {report['calls']} calls in {report['incarnations']} incarnation(s), "
                     f"{report['reproduced']} of its {report['events']} events reproduced (the rest are the host's "
                     f"records{', and what followed a cut call' if 'not_reproducible' in report else ''})"
                     f"{_cut(report.get('not_reproducible', []))}")
    elif "limit" in report:
        _output.line(f"LIMIT     {report['actor']}  event {report['seq']}: {report['error']}")
    else:
        _output.line(f"DIVERGED  {report['actor']}  event {report['seq']}: {report['error']}")
    return 0 if report["ok"] else 1 if "limit" in report else 5


def _cut(calls: list[dict[str, Any]], shown: int = 3) -> str:
    """The calls the replay could not reproduce, the first few by name."""
    if not calls:
        return ""
    named = "; ".join(f"event {c['seq']}: {c['why']}" for c in calls[:shown])
    more = f"; and {len(calls) - shown} more (--json lists them)" if len(calls) > shown else ""
    return f"; not reproducible from {named}{more}"


def _replay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("actor", nargs="?", help="actor id (or a unique prefix) in this home's store")
    p.add_argument("--file", metavar="FILE", help="replay an export (JSON Lines) instead")
    p.add_argument("--component", metavar="FILE", help="the component (default: this home's copy)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="the replayer without seccomp, Landlock and a network namespace of its own, as "
                        "theater-server --no-sandbox runs workers (docs/isolation.md)")


COMMANDS = {"replay": (replay, "replay an actor's recorded calls and compare every event", _replay_args)}

"""``python -m worker``: the fork server each actor's process comes from, the compile step, and
the replayer.

    python -m worker serve --home H --fd N        (started by theater-server)
    python -m worker compile --home H SHA256      (started by theater-server and by the replayer: worker/compiler.py)
    python -m worker replay --home H ACTOR        (run by `theater replay`)

Each worker process renames itself ``python -m worker --actor ID --name NAME`` so ``ps``
shows which actor it runs.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from pathlib import Path

import orjson

from theater import _linux, _logging, grants, sandbox
from theater.chaindb import ChainReader
from theater.config import load_server_config
from theater.errors import TheaterError, UsageError
from theater.events import Event, read_export
from theater.manifest import MAX_FILE
from theater.paths import Home, check_regular


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worker", description=(
        "Theater's worker: the fork server that preloads wasmtime and forks one process per actor "
        "(started by theater-server), and the replayer behind `theater replay`."))
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the fork server (theater-server starts it)")
    serve.add_argument("--home", required=True, help="THEATER_HOME")
    serve.add_argument("--fd", type=int, required=True, help="the server's end of the socket pair")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-journal", action="store_true", help="log lines for the journal (<N> priorities)")
    serve.add_argument("--cgroup", action="append", default=[], metavar="DIR",
                       help="a parent cgroup each worker makes its own group in (repeat per v1 hierarchy)")
    serve.add_argument("--sandbox", default="", metavar="LAYERS",
                       help="comma-separated: net,landlock,seccomp (see theater/sandbox.py; default: none)")
    serve.add_argument("--seccomp-log", action="store_true",
                       help="seccomp allows every call and the fork server logs those outside the allow-list")
    comp = sub.add_parser("compile", help="compile a component for the cache (theater-server and the replayer run it)")
    comp.add_argument("--home", required=True, help="THEATER_HOME (components/, cache/)")
    comp.add_argument("sha256", help="the component, as stored in components/<sha256>.wasm")
    comp.add_argument("--file", help="compile this file instead (the replayer's: its components, and --component)")
    comp.add_argument("--digest", metavar="SHA256",
                      help="the SHA-256 --file's bytes must have (it is refused if they changed since)")
    comp.add_argument("--fuel", action="store_true", help="for an engine that counts fuel (else: epochs only)")
    comp.add_argument("--data-limit", type=int, default=0, metavar="BYTES",
                      help="lower RLIMIT_DATA to this first (where no cgroup does: always for the replayer)")
    comp.add_argument("--user", metavar="UID:GID", help="drop to this user before compiling")
    comp.add_argument("--out", required=True, metavar="FD,FD",
                      help="write the compiled component and its shape to these descriptors (of the caller's files)")
    rep = sub.add_parser("replay", help="replay one actor's chain; prints a JSON report")
    rep.add_argument("--home", required=True, help="THEATER_HOME (chains.db, components/, cache/)")
    rep.add_argument("actor", nargs="?", help="the actor whose stored chain to replay")
    rep.add_argument("--file", help="an export (JSON Lines) instead of the store")
    rep.add_argument("--component", help="the component file (default: the home's copy, by SHA-256)")
    rep.add_argument("--no-sandbox", action="store_true",
                     help="without seccomp, Landlock and a network namespace of its own (worker/replaysandbox.py)")
    args = p.parse_args(argv)
    grants.load_plugins()
    home = Home.resolve(args.home)
    # each command imports only what it needs: the compile step starts before every first start
    if args.command == "serve":
        from .zygote import Zygote

        _logging.setup(args.log_level, args.log_journal)
        Zygote(home, socket.socket(fileno=args.fd), args.cgroup, [s for s in args.sandbox.split(",") if s],
               args.seccomp_log).serve()
        return 0
    if args.command == "compile":
        from .compiler import run

        uid, _, gid = (args.user or "").partition(":")
        cwasm_fd, _, shape_fd = args.out.partition(",")
        if args.file and not args.digest:
            p.error("--file needs --digest: the SHA-256 its bytes must have")
        wasm = Path(args.file) if args.file else home.components / f"{args.sha256}.wasm"
        return run(wasm, args.digest or args.sha256, args.fuel, args.data_limit,
                   (int(uid), int(gid)) if args.user else None, (int(cwasm_fd), int(shape_fd)))
    from .replay import replay
    from .replaysandbox import confine

    _linux.die_with_parent(signal.SIGKILL)      # the CLI that asked may give up (or be killed)
    try:
        events = _load(home, args.actor, args.file)
        component = _component(args.component)
        config = load_server_config(home.root / "server.toml")     # limits a record does not say
        report = replay(events, home, config, component, lambda: confine(home, sandbox.detect(not args.no_sandbox)))
    except TheaterError as e:
        print(orjson.dumps({"ok": False, "code": e.code, "error": e.message}).decode())
        return 2
    print(orjson.dumps(report.to_json()).decode())
    return 0 if report.ok else 1 if report.limit is not None else 5


def _component(given: str | None) -> Path | None:
    """The --component file, checked: a regular file of a component's size at most."""
    if given is None:
        return None
    try:
        check_regular(Path(given), MAX_FILE)
    except OSError as e:
        raise UsageError(f"--component {given}: {e.strerror or type(e).__name__}") from None
    return Path(given)


def _load(home: Home, actor: str | None, file: str | None) -> list[Event]:
    if file:
        return read_export(file)
    if not actor:
        raise UsageError("give an actor id, or --file")
    reader = ChainReader(home.chains_db)
    try:
        return list(reader.events(reader.resolve(actor)))
    finally:
        reader.close()          # the replayer confines itself next: it keeps no descriptor of the store


if __name__ == "__main__":
    sys.exit(main())

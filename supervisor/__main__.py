"""``theater-server`` (also ``python -m supervisor``): run the Theater daemon in the foreground.

Stop it with SIGTERM or Ctrl-C: every actor is stopped (children first), their events
reach the chain, then the chain process and the worker fork server stop.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import pwd
import sys
from pathlib import Path
from typing import IO, Any

from theater import _linux, logsink
from theater.errors import TheaterError, UsageError
from theater.manifest import load_server_config
from theater.paths import Home

from . import limits
from .server import Server

EPILOG = """\
examples:
  theater-server --log-stdout                 run in the foreground, logging to the terminal
  theater-server --home /var/lib/theater      the home the systemd unit uses
  theater-server --listen tcp://0.0.0.0:9000  remote clients (CURVE keys required, see keys/authorized/)

Then, in another terminal: theater start examples/counter/manifest.toml
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="theater-server", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the Theater server: WebAssembly actors, each in its own process, supervised, "
                    "with every action in a signed event chain.")
    p.add_argument("--home", help="state directory (default: $THEATER_HOME, else ~/.theater)")
    p.add_argument("--listen", metavar="ADDRESS",
                   help="management address (default: ipc://$THEATER_HOME/run/theater.sock); "
                        "tcp://HOST:PORT on a non-loopback host requires CURVE client keys")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-stdout", action="store_true", help="log to stdout instead of $THEATER_HOME/logs/server.log")
    p.add_argument("--no-restore", action="store_true",
                   help="do not bring back the actors a previous server on this home was running")
    p.add_argument("--config", metavar="FILE",
                   help="server config: default [limits] for actors, [root] restart flags "
                        "(default: $THEATER_HOME/server.toml if it exists)")
    p.add_argument("--user", metavar="NAME", help="run workers as this user (when the server runs as root)")
    p.add_argument("--no-cgroups", action="store_true",
                   help="do not put workers in cgroups (process memory falls back to an rlimit, no cpu share)")
    p.add_argument("--cgroup-root", metavar="DIR", default="/sys/fs/cgroup", help="where cgroups are mounted")
    args = p.parse_args(argv)
    _linux.raise_nofile()
    try:
        home = Home.resolve(args.home)
        home.ensure()
    except (TheaterError, OSError) as e:
        print(f"theater-server: {getattr(e, 'message', e)}", file=sys.stderr)
        return 2
    log_file: IO[Any] | None = None
    if args.log_stdout:
        logging.basicConfig(level=args.log_level.upper(), stream=sys.stdout,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        log_file = open(home.logs / "server.log", "a", buffering=1)  # noqa: SIM115 - lives as long as the server
        logsink.setup(args.log_level, log_file.fileno())     # a full disk drops lines, never the server
    lock = open(home.run / "server.lock", "a+")  # noqa: SIM115 - held for the server's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        print(f"theater-server: another server is already running on {home.root} "
              f"(pid {lock.read().strip() or '?'})", file=sys.stderr)
        return 1
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    try:
        config = load_server_config(Path(args.config) if args.config else home.root / "server.toml")
        user = _user(args.user)
    except TheaterError as e:
        print(f"theater-server: {e.message}", file=sys.stderr)
        return 2
    if args.no_cgroups:
        controller: limits.Controller = limits.RlimitController(reason="disabled by --no-cgroups")
    else:
        controller = limits.detect(root=Path(args.cgroup_root))
    server = Server(home, args.listen, args.log_level, log_file, restore=not args.no_restore, config=config,
                    limits=controller, user=user)
    try:
        server.open()
        if not args.log_stdout:
            print(f"theater-server: listening on {server.listen} (home {home.root}, log {home.logs / 'server.log'})\n"
                  f"theater-server: limits: {controller.describe()}", flush=True)
        server.serve()
    except TheaterError as e:
        print(f"theater-server: {e.message}", file=sys.stderr)
        server.forkserver.stop(1)
        if server.chain_proc.proc is not None:
            server.chain_proc.proc.kill()
        controller.close()
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _user(name: str | None) -> tuple[int, int] | None:
    if name is None:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"--user {name}: no such user") from None
    if os.geteuid() != 0:
        raise UsageError(f"--user {name}: only a server running as root can run workers as another user")
    return entry.pw_uid, entry.pw_gid


if __name__ == "__main__":
    sys.exit(main())

"""``theater-server`` (also ``python -m supervisor``): run the Theater daemon in the foreground.

Stop it with SIGTERM or Ctrl-C: every actor is stopped (children first), their events
reach the chain, then the chain process and the worker fork server stop. SIGHUP reopens the
log file. ``theater-server unit`` prints a systemd unit for this installation (``unit``).

Every option is checked before anything starts: bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import pwd
import sys
from dataclasses import replace
from pathlib import Path

from theater import __version__, _linux, grants, sandbox
from theater.capacity import host_actors
from theater.config import ServerConfig, load_server_config
from theater.errors import TheaterError, UsageError
from theater.paths import Home
from theater.protocol import MAX_INT

from . import limits, logs, unit
from .console import Console
from .sdnotify import Notifier
from .security import needs_curve
from .server import Server
from .usage import Parser

EPILOG = """\
examples:
  theater-server --log-stdout                 run in the foreground, logging to the terminal
  theater-server --home /var/lib/theater      the home the systemd unit uses
  theater-server --listen tcp://0.0.0.0:9000  remote clients (CURVE keys required: theater key --curve)
  theater-server --metrics 127.0.0.1:9464     Prometheus metrics at http://127.0.0.1:9464/metrics
  theater-server --console 127.0.0.1:8470     a read-only web console at http://127.0.0.1:8470/
  theater-server unit --user theater-actors   print a systemd unit for this installation

Then, in another terminal: theater start examples/counter/manifest.toml
Operating it (systemd, server.toml, logs, metrics, remote access): docs/operations.md
"""


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="theater-server", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the Theater server: WebAssembly actors, each in its own process, supervised, "
                    "with every action in a signed event chain.")
    p.add_argument("--version", action="version", version=f"theater-server {__version__}")
    p.add_argument("--home", help="state directory (default: $THEATER_HOME, else ~/.theater)")
    p.add_argument("--listen", metavar="ADDRESS",
                   help="management address (default: ipc://$THEATER_HOME/run/theater.sock); "
                        "tcp://HOST:PORT off loopback requires CURVE (see `theater key --curve`)")
    p.add_argument("--curve", action="store_true", help="require CURVE on a loopback tcp:// address too")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics over HTTP there (needs: pip install 'theater[metrics]')")
    p.add_argument("--metrics-remote", action="store_true",
                   help="allow --metrics on an address other hosts reach (the metrics have no authentication)")
    p.add_argument("--console", metavar="HOST:PORT",
                   help="serve a read-only web console there (needs: pip install 'theater[console]'); off "
                        "loopback it asks for the token `theater console --token` prints")
    p.add_argument("--console-token", action="store_true", help="ask for the console's token on loopback too")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="the least severe lines the server's log keeps (default: info)")
    p.add_argument("--log-stdout", action="store_true",
                   help="log to stdout instead of $THEATER_HOME/logs/server.log (for the journal when "
                        "$JOURNAL_STREAM says stdout is it: <N> priorities, no timestamps)")
    p.add_argument("--no-restore", action="store_true",
                   help="do not bring back the actors a previous server on this home was running")
    p.add_argument("--ephemeral", action="store_true",
                   help="neither bring back saved actors nor save new ones (what `theater run` starts)")
    p.add_argument("--config", metavar="FILE",
                   help="server config: default [limits] for actors, [root] restart flags and max_actors, "
                        "[chain] durability, [compile], [store], [secrets] (docs/operations.md; default: "
                        "$THEATER_HOME/server.toml if it exists)")
    p.add_argument("--max-actors", metavar="N",
                   help="live actors at once, all told: a start or spawn past it is refused (default: [root] "
                        "max_actors in server.toml, else what the memory and pids of this host, or of the server's "
                        f"cgroup, hold for idle actors: {host_actors()})")
    p.add_argument("--user", metavar="NAME", help="run workers as this user (when the server runs as root)")
    p.add_argument("--no-cgroups", action="store_true",
                   help="do not put workers in cgroups (process memory falls back to an rlimit, no cpu share)")
    p.add_argument("--cgroup-root", metavar="DIR", default="/sys/fs/cgroup",
                   help="where cgroups are mounted (default: /sys/fs/cgroup)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="workers without seccomp, Landlock and their own network namespace (docs/isolation.md)")
    p.add_argument("--sandbox-log", action="store_true",
                   help="seccomp lets every call through and the fork server logs those outside the allow-list "
                        "(for deriving the list on a new platform; never in production)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["unit"]:
        return unit.main(argv[1:])
    args = _parser().parse_args(argv)
    # Everything the server and its children create (chains.db and its WAL, the log, sockets,
    # saved actors, components, caches) is its owner's alone; --user opens what workers need.
    os.umask(0o077)
    _linux.raise_nofile()
    home = Home.resolve(args.home)
    try:
        grants.load_plugins()
        try:
            home.ensure()
            sink = logs.LogSink(None if args.log_stdout else home.logs / "server.log")
        except OSError as e:
            raise UsageError(_home_problem(home, e)) from None
        config, user = _max_actors(_config(home, args.config), args.max_actors), _user(args.user)
        curve = needs_curve(home, args.listen or home.management_endpoint, args.curve)
        if args.metrics_remote and not args.metrics:
            raise UsageError("--metrics-remote goes with --metrics HOST:PORT")
        metrics_at = None
        if args.metrics:
            from .exporter import parse_address  # prometheus_client: only with --metrics (~130 ms)
            metrics_at = parse_address(args.metrics, args.metrics_remote)
        if args.console_token and not args.console:
            raise UsageError("--console-token goes with --console HOST:PORT")
        console = Console.configure(home, args.console, args.console_token) if args.console else None
    except TheaterError as e:
        print(f"theater-server: {e.message}", file=sys.stderr)
        return 2
    logs.setup(sink, args.log_level)
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
    home.make_private()         # (once no other server uses this home: see supervisor.sharing)
    if args.no_cgroups:
        controller: limits.Controller = limits.RlimitController(reason="disabled by --no-cgroups")
    else:
        controller = limits.detect(root=Path(args.cgroup_root))
    layers = sandbox.detect(not args.no_sandbox)
    server = Server(home, args.listen, args.log_level, sink, restore=not (args.no_restore or args.ephemeral),
                    keep_actors=not args.ephemeral, config=config,
                    limits=controller, user=user, notifier=Notifier(), metrics=metrics_at is not None, curve=curve,
                    console=console, sandbox=layers, seccomp_log=args.sandbox_log)
    exporter = None
    if server.metrics is not None:
        from .exporter import Exporter
        exporter = Exporter(server.metrics, home.chain_endpoint)
    try:
        if exporter is not None and metrics_at is not None:
            server.health.metrics_url = exporter.start(*metrics_at)
        if console is not None:
            server.health.console_url = console.listen()
        server.open()
        if not args.log_stdout:
            print(f"theater-server: listening on {server.listen} (home {home.root}, log {sink.describe()})\n"
                  f"theater-server: limits: {controller.describe()}; at most {config.max_actors} live actors\n"
                  f"theater-server: sandbox: {layers.describe()}"
                  + (f"\ntheater-server: metrics at {server.health.metrics_url}" if exporter else "")
                  + (f"\ntheater-server: console at {server.health.console_url}" if console else ""), flush=True)
        server.serve()
    except TheaterError as e:
        print(f"theater-server: {e.message}", file=sys.stderr)
        server.forkserver.stop(1)
        if server.chain_proc.proc is not None:
            server.chain_proc.proc.kill()
        controller.close()
        return 2 if isinstance(e, UsageError) else 1
    except KeyboardInterrupt:
        return 130
    finally:
        if exporter is not None:
            exporter.close()
        if console is not None:
            console.close()
    return 0


def _home_problem(home: Home, e: OSError) -> str:
    """Why the home cannot be used, in words (not ``[Errno 17] File exists``)."""
    where = e.filename or home.root
    if e.errno == errno.EEXIST:
        what = f"{'it' if str(where) == str(home.root) else where} is a file, not a directory"
    elif e.errno == errno.ENOTDIR:
        what = f"{where}: part of this path is a file, not a directory"
    else:
        what = f"{where}: {e.strerror or e}"
    return f"--home {home.root}: cannot use it as the server's home: {what}"


def _config(home: Home, given: str | None) -> ServerConfig:
    """--config FILE, which must exist; else $THEATER_HOME/server.toml if it does."""
    if given is not None and not Path(given).is_file():
        what = "a directory, not a file" if Path(given).is_dir() else "no such file"
        raise UsageError(f"--config {given}: {what} (leave --config out to use "
                         f"{home.root / 'server.toml'}, or the defaults)")
    return load_server_config(Path(given) if given else home.root / "server.toml")


def _max_actors(config: ServerConfig, given: str | None) -> ServerConfig:
    """--max-actors N over server.toml's [root] max_actors."""
    if given is None:
        return config
    if not (given.isascii() and given.isdigit() and 1 <= int(given) <= MAX_INT):
        raise UsageError(f"--max-actors {given}: expected a whole number of actors from 1 to {MAX_INT}")
    return replace(config, max_actors=int(given))


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

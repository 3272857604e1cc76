"""The ``theater`` command line.

Each command is a function ``(args, ctx) -> exit status`` in one of the modules here,
registered in ``COMMANDS`` with its help text and arguments. Every failure leaves by one
route: a TheaterError becomes one line on stderr and the exit status from ``_output.EXIT``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__, grants
from ..client import DEFAULT_TIMEOUT
from ..errors import TheaterError, UsageError
from ..paths import Home
from . import _output, actors, build, chains, completion, console, inspect, logs, mcp, messages, new, replay, run
from ._context import Command, Context, seconds

EPILOG = """\
exit status: 0 ok, 1 the actor failed or another error, 2 bad input (usage, manifest, component),
3 unknown actor/channel, 4 no server, 5 a chain failed verification, 6 timeout, 7 refused.

getting started:
  theater run examples/hello/manifest.toml     run one actor with an embedded server and see its logs
  theater-server --log-stdout &                 or start a server, then:
  theater start examples/counter/manifest.toml
  theater message counter +1 --request         an actor's id, a unique prefix of it, or its name
  theater logs counter -f                      its log lines as they come
  source <(theater completion bash)            tab completion (also zsh, fish)
  theater new hello && theater build hello     a Python actor of your own (docs/writing-actors.md)
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (bad input gets one line, like every error), and
    a command's options taken before or after its positionals: plain argparse gives an optional
    positional nothing once an option stands between it and the one before, so it refused
    `theater message ID --request DATA` (DATA "unrecognized"). ``--`` still ends the options."""

    _intermixing = False

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        # a parser of sub-commands cannot be intermixed (argparse refuses); the flag: argparse's
        # intermixed parse calls parse_known_args twice itself, which must be the plain one
        if self._intermixing or any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in self._actions):
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> NoReturn:
        _output.error(f"{message} (see `{self.prog} --help`)")
        sys.exit(_output.EXIT["usage"])


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="theater", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Manage WebAssembly actors on a theater-server: start them, message them, "
                    "read and verify their signed event chains.")
    p.add_argument("--version", action="version", version=f"theater {__version__}")
    common = _Parser(add_help=False)
    for parser, default in ((p, None), (common, argparse.SUPPRESS)):
        # accepted before or after the command; given after, they win
        parser.add_argument("--home", default=default,
                            help="THEATER_HOME to use (default: $THEATER_HOME, else ~/.theater)")
        parser.add_argument("--json", action="store_true", default=default or False, help="machine-readable output")
        parser.add_argument("--server", metavar="ADDRESS", default=default,
                            help="server address (default: $THEATER_SERVER, else the home's unix socket)")
        parser.add_argument("--timeout", type=seconds, default=default, metavar="SECONDS",
                            help=f"how long to wait for an answer (default {DEFAULT_TIMEOUT:g})")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for module in (run, actors, inspect, messages, chains, logs, replay, mcp, console, new, build, completion):
        for name, (fn, help_, add_args) in module.COMMANDS.items():
            group, _, leaf = name.rpartition(" ")
            if group:            # "chain head": a sub-command of "chain"
                if group not in groups:
                    gp = sub.add_parser(group, help=module.GROUPS[group])
                    groups[group] = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
                target = groups[group]
            else:
                target = sub
            sp = target.add_parser(leaf, parents=[common], help=help_, description=fn.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
            add_args(sp)
            # `theater completion` reads the whole tree; an unrecognized argument points to this help
            sp.set_defaults(func=fn, parser=p, command_parser=sp)
    return p


def _home(given: str | None) -> Home:
    """The home to use; one that is there but is not a folder is bad input, said before anything
    tries to make folders in it."""
    home = Home.resolve(given)
    if home.root.exists() and not home.root.is_dir():
        where = "--home" if given else "THEATER_HOME" if os.environ.get("THEATER_HOME") else "the home"
        raise UsageError(f"{where} {home.root} is a file, not a directory")
    return home


# Options whose value may begin with "-" (a CURVE key in Z85 does, one time in 85): argparse
# would take such a value for an option, so it is joined to its option first.
DASHED_VALUES = ("--server-key",)


def _joined(argv: list[str]) -> list[str]:
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--":                 # the rest is positional, as the user wrote it
            return [*out, arg, *it]
        value = next(it, None) if arg in DASHED_VALUES else None
        out.append(f"{arg}={value}" if value is not None else arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(_joined(sys.argv[1:] if argv is None else argv))
    if extra:
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    ctx: Context | None = None
    try:
        grants.load_plugins()
        ctx = Context(_home(args.home), args.json, args.server,
                      args.timeout if args.timeout is not None else DEFAULT_TIMEOUT, args.timeout is not None)
        return func(args, ctx)
    except TheaterError as e:
        _output.error(e.message)
        return _output.exit_status(e)
    except BrokenPipeError:         # our reader left (`| head`): not an error (before OSError, its base)
        return 0
    except OSError as e:            # a file or folder we were given, or the home, that we cannot use
        _output.error(_output.os_problem(e))
        return _output.EXIT["error"]
    except sqlite3.Error as e:      # the home's chains.db, damaged or unreadable (read directly: chaindb)
        where = ctx.home.chains_db if ctx is not None else "chains.db"
        _output.error(f"{where}: {type(e).__name__}: {e} (the chain store cannot be read)")
        return _output.EXIT["error"]
    except KeyboardInterrupt:
        return 130
    finally:
        if ctx is not None:
            ctx.close()

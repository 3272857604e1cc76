"""``theater console --token``: the access token of the server's web console.

The console itself is served by theater-server (``--console HOST:PORT``, docs/console.md);
off loopback, or with ``--console-token``, it lets in only those who show this token.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from .. import console_token
from ..errors import UsageError
from . import _output
from ._context import Context


def console(args: argparse.Namespace, ctx: Context) -> int:
    """Print the web console's access token, making it first if there is none (--rotate: replace
    it; old links and browser sessions stop working at their next request). A browser opens
    http://HOST:PORT/?token=TOKEN once; a script sends "Authorization: Bearer TOKEN"."""
    if not args.token:
        raise UsageError("give --token: theater-server serves the console (--console HOST:PORT); "
                         "this command prints its access token")
    try:
        token = console_token.create(ctx.home, replace=args.rotate)
    except OSError as e:
        raise UsageError(f"cannot write {console_token.path(ctx.home)}: {e.strerror or e}") from None
    url = _running_console(ctx)
    if ctx.json:
        _output.emit_json({"token": token, "file": str(console_token.path(ctx.home)), "console": url})
        return 0
    _output.line(token)
    if sys.stderr.isatty():
        where = f"{url}?token=TOKEN" if url else "http://HOST:PORT/?token=TOKEN"
        _output.note(f"open {where} once in a browser; scripts send the header \"Authorization: Bearer TOKEN\"")
    return 0


def _running_console(ctx: Context) -> str | None:
    """Where this home's running server serves its console (run/server.json), if it does."""
    try:
        info = orjson.loads((ctx.home.run / "server.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    url = info.get("console") if isinstance(info, dict) else None
    return url if isinstance(url, str) else None


def _console_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", action="store_true", help="print the console's access token (made if missing)")
    p.add_argument("--rotate", action="store_true", help="with --token: replace the token with a new one")


COMMANDS = {"console": (console, "the web console's access token (theater-server serves the console)",
                        _console_args)}

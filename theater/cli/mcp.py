"""``theater mcp``: serve this home's actors to MCP clients (``theater.mcp_server``)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys

from ..client import Client
from ..endpoints import is_loopback
from ..errors import TheaterError, UsageError
from . import _output
from ._context import Context

MISSING = "theater mcp needs the MCP SDK: pip install 'theater[mcp]'"


def mcp(args: argparse.Namespace, ctx: Context) -> int:
    """Serve the actors of this home's theater-server as MCP tools, over stdio (for a client that
    launches this command) or, with --http, over streamable HTTP at http://HOST:PORT/mcp.

    Tools: theater_list, theater_inspect, theater_events, theater_verify, theater_tree, and
    theater_start and theater_stop (left out with --read-only, and over HTTP unless --manage);
    then every running actor's [[mcp.tool]] tables, named <actor>.<tool>. A call of an actor's
    tool is a request to it: {"tool": NAME, "arguments": {...}} as JSON, its reply the text.
    The list follows actors as they start and stop. Client configuration: docs/mcp.md.
    """
    if importlib.util.find_spec("mcp") is None:
        raise UsageError(MISSING)
    host, port = _address(args.http) if args.http is not None else (None, 0)
    if args.manage and args.read_only:
        raise UsageError("--manage and --read-only contradict each other: give one")
    if args.manage and host is None:
        raise UsageError("--manage is for --http: over stdio theater_start and theater_stop are offered "
                         "already (--read-only leaves them out)")
    if host is not None and not is_loopback(host) and not args.allow_remote:
        raise UsageError(f"--http {args.http}: {host} is not a loopback address; anyone who can reach it can call "
                         "these tools without authenticating. Add --allow-remote if that is what you want")
    import anyio

    from ..mcp_server import Bridge, Pool, serve_http, serve_stdio

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="theater mcp: %(message)s")
    try:
        with Client(ctx.home, ctx.server, timeout=3) as c:
            c.ping()
    except TheaterError as e:          # it may start later: the tools say so until it does
        _output.note(f"{e.message}; serving anyway")
    read_only = args.read_only or (host is not None and not args.manage)
    bridge = Bridge(Pool(ctx.home, ctx.server, ctx.timeout), read_only)
    try:
        if host is None:
            anyio.run(serve_stdio, bridge)
        else:
            anyio.run(serve_http, bridge, host, port)
    except OSError as e:
        raise UsageError(f"--http {args.http}: {e.strerror or e}") from None
    return 0


def _address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (IPv6 in brackets); HOST defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise UsageError(f"--http {text}: expected [HOST:]PORT, e.g. 127.0.0.1:8765 (PORT 0: any free port)")
    return host, int(port)


def _mcp_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--http", metavar="[HOST:]PORT",
                   help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (HOST: 127.0.0.1)")
    p.add_argument("--read-only", action="store_true", help="leave out theater_start and theater_stop")
    p.add_argument("--manage", action="store_true", help="over HTTP, offer theater_start and theater_stop too")
    p.add_argument("--allow-remote", action="store_true",
                   help="let --http listen on an address other machines can reach (no authentication!)")


COMMANDS = {"mcp": (mcp, "serve this home's actors as MCP tools (stdio, or --http)", _mcp_args)}

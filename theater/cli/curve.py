"""``theater key --curve``: the CURVE keys that let an operator on another host manage a server.

On the server's host, ``theater key --curve`` makes the server's key pair (once) and prints
its public key. On the operator's host, ``theater key --curve --client --server
tcp://HOST:PORT --server-key KEY`` makes this client's pair (once), remembers the server's
public key for that address, and prints the client's public key, which the server's operator
puts in ``keys/authorized/NAME.key`` on the server. Files: see ``theater.keys``.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import curve_keys
from ..errors import UsageError
from . import _output
from ._context import Context


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--curve", action="store_true",
                   help="the server's CURVE public key for remote management (made if missing), instead")
    p.add_argument("--client", action="store_true",
                   help="with --curve: this client's CURVE public key (made if missing), to authorize on a server")
    p.add_argument("--server-key", metavar="KEY",
                   help="with --curve --client and --server tcp://HOST:PORT (or $THEATER_SERVER): trust KEY as "
                        "that server's public key")


def key(args: argparse.Namespace, ctx: Context) -> int:
    """Prints (making it first, if need be) this home's CURVE public key, server's or client's."""
    if not args.curve:
        raise UsageError("--client and --server-key go with --curve (theater key --curve --client ...)")
    if args.server_key is not None and not args.client:
        raise UsageError("--server-key is for a client: theater key --curve --client --server tcp://HOST:PORT "
                         "--server-key KEY")
    role = "client" if args.client else "server"
    trusted = None
    if args.server_key is not None:
        server = ctx.server or os.environ.get("THEATER_SERVER", "")
        if not server.startswith("tcp://"):
            raise UsageError("--server-key needs the server's address: --server tcp://HOST:PORT")
        try:
            trusted = curve_keys.trust_server_key(ctx.home, server, args.server_key)
        except OSError as e:
            where = curve_keys.server_key_file(ctx.home, server)
            raise UsageError(f"cannot write {where}: {e.strerror or e}") from None
    try:
        pair = curve_keys.curve_pair(ctx.home, role, create=True)
        if role == "server":
            (ctx.home.keys / "authorized").mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write CURVE keys under {ctx.home.keys}: {e.strerror or e}") from None
    assert pair is not None
    public = pair[0]
    if ctx.json:
        _output.emit_json({"curve_public_key": public, "role": role, "file": str(ctx.home.keys / "curve" /
                           f"{role}.key"), "trusted_server_key": str(trusted) if trusted else None})
        return 0
    _output.line(public)
    if sys.stderr.isatty():
        if role == "server":
            _output.note(f"give it to clients (theater key --curve --client --server tcp://THIS-HOST:PORT "
                         f"--server-key KEY); authorize theirs in {ctx.home.keys / 'authorized'}/NAME.key")
        else:
            _output.note("authorize it on the server: put it in $THEATER_HOME/keys/authorized/NAME.key there")
    return 0

"""``python -m supervisor.console``: the web console's process (started by ``theater-server --console``)."""

from __future__ import annotations

import argparse
import socket
import sys

from theater import _logging
from theater.errors import TheaterError
from theater.paths import Home

from .process import serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supervisor.console", description=(
        "Theater's web console process: theater-server --console starts it, hands it the listening "
        "socket and stops it; run it by hand only to debug."))
    p.add_argument("--home", help="THEATER_HOME (default: $THEATER_HOME or ~/.theater)")
    p.add_argument("--fd", type=int, required=True, help="the listening socket the server bound")
    p.add_argument("--token", action="store_true", help="every request must carry the console's access token")
    p.add_argument("--parent", type=int, help="the server: exit when it exits")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-journal", action="store_true", help="log lines for the journal (<N> priorities)")
    args = p.parse_args(argv)
    _logging.helper(args.log_level, args.log_journal, args.parent)
    try:
        serve(Home.resolve(args.home), socket.socket(fileno=args.fd), args.token)
    except TheaterError as e:
        print(f"console: {e.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

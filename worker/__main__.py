"""``python -m worker --home H --fd N``: the fork server each actor's process is forked from.

theater-server starts it with one end of a SOCK_SEQPACKET socket pair as ``--fd``; each
worker process then renames itself ``python -m worker --actor ID --name NAME`` so ``ps``
shows which actor it runs.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from theater.paths import Home

from .zygote import Zygote


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m worker", description=(
        "Theater's worker fork server: preloads wasmtime and forks one process per actor on the "
        "server's request. theater-server starts it; it is not meant to be run by hand."))
    p.add_argument("--home", required=True, help="THEATER_HOME")
    p.add_argument("--fd", type=int, required=True, help="the server's end of the socket pair")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = socket.socket(fileno=args.fd)
    Zygote(Home.resolve(args.home), sock).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

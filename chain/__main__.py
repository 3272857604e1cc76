"""``python -m chain --home H``: the chain process (started and restarted by theater-server)."""

from __future__ import annotations

import argparse
import sqlite3
import sys

import zmq

from theater import _linux, _logging
from theater.config import DURABILITY
from theater.errors import TheaterError
from theater.paths import Home

from .service import ChainService


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chain", description=(
        "Theater's chain process: receives actors' events from workers, links, signs and stores "
        "them in $THEATER_HOME/chains.db, and answers queries. theater-server starts it; run it "
        "by hand only to debug."))
    p.add_argument("--home", help="THEATER_HOME (default: $THEATER_HOME or ~/.theater)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-journal", action="store_true", help="log lines for the journal (<N> priorities)")
    p.add_argument("--parent", type=int, help="the server: exit when it exits, and take the server's part "
                                              "(records, queries, binds) only from this process")
    p.add_argument("--durability", default="process", choices=DURABILITY,
                   help="when an acknowledged event is safe: once written (process), or fsynced (machine)")
    args = p.parse_args(argv)
    _logging.helper(args.log_level, args.log_journal, args.parent)
    _linux.raise_nofile()
    try:
        home = Home.resolve(args.home)
        home.ensure()
        ChainService(home, args.parent, args.durability).serve()
    except TheaterError as e:
        print(f"chain: {e.message}", file=sys.stderr)
        return 1
    except sqlite3.Error as e:      # a damaged or unreadable chains.db: say so, in one line
        print(f"chain: {home.chains_db}: {type(e).__name__}: {e} (the chain store cannot be used; keep a copy "
              f"before repairing it)", file=sys.stderr)
        return 1
    except (OSError, zmq.ZMQError) as e:     # e.g. a socket path it cannot bind
        print(f"chain: cannot start: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

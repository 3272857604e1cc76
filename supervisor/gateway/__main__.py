"""``python -m supervisor.gateway --home H``: the gateway process (started and restarted by theater-server)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from theater import _logging
from theater.config import ServerConfig, load_server_config
from theater.errors import TheaterError
from theater.paths import Home
from theater.secrets import Secrets

from .service import Gateway


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m supervisor.gateway", description=(
        "Theater's gateway: makes actors' HTTP requests (allow-listed, secrets placed by the host) "
        "and keeps the content store. theater-server starts it; run it by hand only to debug."))
    p.add_argument("--home", help="THEATER_HOME (default: $THEATER_HOME or ~/.theater)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-journal", action="store_true", help="log lines for the journal (<N> priorities)")
    p.add_argument("--parent", type=int, help="the server: grants are taken from it alone; exit when it exits")
    p.add_argument("--config", help="the server's config file ([secrets], [store])")
    p.add_argument("--worker-group", type=int, help="the group workers run as (--user): they may connect")
    args = p.parse_args(argv)
    _logging.helper(args.log_level, args.log_journal, args.parent)
    for quiet in ("httpx", "httpcore"):     # their lines name every request: the gateway logs what matters
        logging.getLogger(quiet).setLevel(logging.WARNING)
    try:
        home = Home.resolve(args.home)
        config = load_server_config(Path(args.config)) if args.config else ServerConfig()
        gateway = Gateway(home, args.parent, Secrets(config.secrets, home.secrets), config.store_max_bytes)
        gateway.bind(args.worker_group)
    except TheaterError as e:
        print(f"gateway: {e.message}", file=sys.stderr)
        return 1
    gateway.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

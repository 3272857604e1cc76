"""What every command gets: where the server is, how to print, and one connection to it."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from ..client import Client
from ..errors import UsageError
from ..paths import Home
from ..protocol import MAX_INT, MAX_PAYLOAD


@dataclass
class Context:
    home: Home
    json: bool
    server: str | None
    timeout: float
    timeout_given: bool = False        # --timeout was on the command line (a command may default otherwise)
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.home, self.server, self.timeout)
        return self._client

    def close(self) -> None:
        """Closes the connection; the next use of ``client`` opens a fresh one."""
        if self._client is not None:
            self._client.close()
            self._client = None


Command = Callable[[argparse.Namespace, Context], int]


def actor_arg(p: argparse.ArgumentParser) -> None:
    """The positional ACTOR most commands take."""
    p.add_argument("actor", help="actor id (or a unique prefix of it, or its name)")


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``minimum`` to 2^63-1, what the chain can store and the
    wire carries (a larger --since once killed the chain process)."""
    def parse(text: str) -> int:
        try:
            n = int(text, 10)
        except ValueError:
            n = None
        if n is None or not minimum <= n <= MAX_INT:
            raise argparse.ArgumentTypeError(f"expected an integer from {minimum} to {MAX_INT}, got {text!r}")
        return n
    return parse


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds (at most a year)."""
    try:
        s = float(text)
    except ValueError:
        s = math.nan
    if not 0 < s <= 365 * 86400:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0 (at most a year), got {text!r}")
    return s


def read_input(path: str, what: str) -> bytes:
    """A file the user named (``-``: stdin), read only as far as one message carries: more is
    refused before it is all read (an endless input, /dev/zero, took gigabytes)."""
    try:
        if path == "-":
            if sys.stdin is None:
                raise UsageError(f"{what} -: stdin is closed")
            data = sys.stdin.buffer.read(MAX_PAYLOAD + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_PAYLOAD + 1)
    except OSError as e:            # the user named it: bad input (exit 2), said in words
        raise UsageError(f"{what} {path}: {e.strerror or type(e).__name__}") from None
    if len(data) > MAX_PAYLOAD:
        where = "stdin" if path == "-" else path
        raise UsageError(f"{what} {where}: over the {MAX_PAYLOAD}-byte limit of one message")
    return data

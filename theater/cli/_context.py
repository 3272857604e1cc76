"""What every command gets: where the server is, how to print, and one connection to it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from ..client import Client
from ..paths import Home


@dataclass
class Context:
    home: Home
    json: bool
    server: str | None
    timeout: float
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

"""Clients that went away without a word: their channels, followed chains and watches end.

ZeroMQ does not tell the server that a client's connection ended: only a push to it fails then
(ROUTER_MANDATORY), and what the client held ends there (``channels.shut``, ``Relay.published``,
``Directory``). A client killed while it held a channel on an actor that never wrote on it again,
or followed a chain that stayed quiet (a stopped actor's), kept it in the server, and the actor's
worker its end of the channel, for the server's life (scripts/soak.py saw them pile up). So every
``KEEPALIVE_EVERY`` seconds each client holding any of these is pushed ``keepalive`` (clients
ignore it); one that cannot be reached is gone, and what it held ends as if it had closed it.
"""

from __future__ import annotations

from typing import Protocol

import zmq

from .channels import Channels
from .directory import Directory
from .relay import Relay

# Seconds between two keepalives to a client: as long as what a gone client held may outlive it.
KEEPALIVE_EVERY = 5.0


class Outbox(Protocol):
    """What this module uses of the server's ``supervisor.outbox.Outbox``."""

    channels: Channels

    def send_client(self, client: bytes, header: dict[str, object], *frames: bytes) -> None: ...

    def to_worker(self, actor_id: str, header: dict[str, object], *frames: bytes) -> bool: ...


def sweep(outbox: Outbox, relay: Relay, directory: Directory) -> None:
    """Pushes ``keepalive`` to every client holding something; ends what the gone ones held."""
    for client in outbox.channels.clients() | relay.clients() | directory.clients():
        try:
            outbox.send_client(client, {"k": "keepalive"})
        except zmq.Again:
            continue            # there, but not reading: its queue is full
        except zmq.ZMQError:
            gone(outbox, relay, directory, client)


def gone(outbox: Outbox, relay: Relay, directory: Directory, client: bytes) -> None:
    """Ends ``client``'s channels (their actors hear the close, as from ``channel_close``),
    followed chains and watches."""
    for ch in outbox.channels.of_client(client):
        chan = outbox.channels.pop(ch)
        if chan is not None:
            outbox.to_worker(chan.actor, {"k": "msg", "what": "chan_close", "ch": ch})
    relay.drop(client)
    directory.drop(client)

"""Channels with a client at one end: who holds each, and the credit that bounds what is on its way.

An actor writes on such a channel through the server: its worker's ``msg chan_msg`` arrives on
the control socket and is pushed to the client. What a client has not read yet waits in
ZeroMQ's queue towards it, in this process, which no byte count bounds (and past its
high-water mark ZeroMQ refuses more). So each channel has a window of ``CLIENT_WINDOW`` bytes:
the worker has no more than that unacknowledged on it (its ``send-on-channel`` waits), the
client acknowledges what it has read (``channel_ack``) and the server passes that on
(``chan_ack``). A message the server cannot pass on (the worker went past the window, or the
push failed: the client is gone or not reading) closes the channel, and both ends are told
why: the client with ``channel_closed {error}``, the worker with ``chan_ack {error}`` (its
actor's chain records it). None is dropped without a word.

The server's count of a channel's bytes in flight is never above the worker's: the worker
counts a message when it sends it, and lowers its count only by what the server acknowledged
(and lowered its own by) first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import zmq

from theater.protocol import CLIENT_WINDOW

log = logging.getLogger("theater.server")

# Channels one client may hold open at once: each may have a window in flight in this process.
CHANNELS_PER_CLIENT = 64


@dataclass(slots=True)
class Channel:
    client: bytes
    actor: str
    in_flight: int = 0          # bytes pushed to the client and not acknowledged by it


class Channels:
    """The open channels with a client at one end, by channel id."""

    def __init__(self) -> None:
        self._open: dict[str, Channel] = {}
        self._held: dict[bytes, int] = {}       # client -> how many it holds

    def __len__(self) -> int:
        return len(self._open)

    def get(self, ch: str) -> Channel | None:
        return self._open.get(ch)

    def add(self, ch: str, client: bytes, actor: str) -> None:
        self._open[ch] = Channel(client, actor)
        self._held[client] = self._held.get(client, 0) + 1

    def pop(self, ch: str) -> Channel | None:
        chan = self._open.pop(ch, None)
        if chan is not None:
            left = self._held[chan.client] - 1
            if left:
                self._held[chan.client] = left
            else:
                del self._held[chan.client]
        return chan

    def held_by(self, client: bytes) -> int:
        return self._held.get(client, 0)

    def clients(self) -> set[bytes]:
        """The clients holding a channel."""
        return set(self._held)

    def of_client(self, client: bytes) -> list[str]:
        return [ch for ch, chan in self._open.items() if chan.client == client]

    def of_actor(self, actor: str) -> list[str]:
        return [ch for ch, chan in self._open.items() if chan.actor == actor]


class Outbox(Protocol):
    """What this module uses of the server's ``supervisor.outbox.Outbox`` (which holds the channels)."""

    channels: Channels

    def push(self, client: bytes, header: dict[str, Any], *frames: bytes) -> bool: ...

    def send_client(self, client: bytes, header: dict[str, Any], *frames: bytes) -> None: ...

    def to_worker(self, actor_id: str, header: dict[str, Any], *frames: bytes) -> bool: ...


def too_many(channels: Channels, client: bytes) -> str | None:
    """Why ``client`` may not open another channel, if it may not."""
    if channels.held_by(client) < CHANNELS_PER_CLIENT:
        return None
    return (f"this client has {CHANNELS_PER_CLIENT} channels open, the most one client may hold at once: "
            f"close one first")


def relay(outbox: Outbox, actor_id: str, header: dict[str, Any], data: list[bytes]) -> None:
    """What ``actor_id``'s worker writes on a channel whose other end is a client."""
    ch = header.get("ch", "")
    chan = outbox.channels.get(ch)
    if chan is None:            # the client closed it meanwhile (the worker hears it): nobody wants it
        return
    if chan.actor != actor_id:
        log.warning("actor %s wrote on channel %s, which is actor %s's: dropped", actor_id, ch, chan.actor)
        return
    if header["what"] == "chan_close":
        outbox.channels.pop(ch)
        outbox.push(chan.client, {"k": "channel_closed", "channel": ch})
        return
    if header["what"] != "chan_msg":
        return
    message = data[0] if data else b""
    size = len(message)
    if chan.in_flight and chan.in_flight + size > CLIENT_WINDOW:
        shut(outbox, ch, f"actor {actor_id} sent a message of {size} bytes on it with {chan.in_flight} bytes not "
                         f"yet acknowledged by the client, past the channel's window of {CLIENT_WINDOW} bytes")
        return
    try:
        outbox.send_client(chan.client, {"k": "channel_message", "channel": ch}, message)
    except zmq.Again:
        shut(outbox, ch, f"a message of {size} bytes could not be passed on: the client is not reading "
                         f"(the server's queue to it is full)")
        return
    except zmq.ZMQError as e:
        shut(outbox, ch, f"a message of {size} bytes could not be passed on: the client is gone ({e.strerror})")
        return
    chan.in_flight += size


def ack(outbox: Outbox, client: bytes, ch: str, size: int) -> None:
    """``client`` read ``size`` bytes of channel ``ch``'s messages: the actor may send that much
    more. A channel closed meanwhile, or another client's, is credited nothing; no more than is
    in flight is credited."""
    chan = outbox.channels.get(ch)
    if chan is None or chan.client != client:
        return
    size = min(max(size, 0), chan.in_flight)
    if size:
        chan.in_flight -= size
        outbox.to_worker(chan.actor, {"k": "chan_ack", "ch": ch, "bytes": size})


def shut(outbox: Outbox, ch: str, why: str) -> None:
    """Closes channel ``ch`` because a message on it could not be passed on: both ends hear why."""
    chan = outbox.channels.pop(ch)
    if chan is None:
        return
    error = f"the server closed channel {ch}: {why}"
    log.warning("actor %s: %s", chan.actor, error)
    outbox.push(chan.client, {"k": "channel_closed", "channel": ch, "error": error})
    outbox.to_worker(chan.actor, {"k": "chan_ack", "ch": ch, "bytes": 0, "error": error})

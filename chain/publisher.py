"""The chain's XPUB (``run/events.sock``): each stored event, under the topic ``actor.<id>``,
to whoever subscribed. Observers only: PUB drops what a slow subscriber cannot take, and
subscribers catch up from the store by sequence number.

The server alone subscribes (it relays events to its clients, each checked there): the socket
takes subscriptions by hand (``XPUB_MANUAL``), only from the server's pid as the kernel reports
it. A worker can reach ``run/events.sock`` when it runs as the server's own user (no ``--user``):
it subscribed to every actor's events, data and all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import orjson
import zmq

from theater import peercred
from theater._logging import Sparse

from .access import LOG_EVERY
from .store import Staged

log = logging.getLogger("theater.chain")

Cred = tuple[int, int, int] | None


class Publisher:
    def __init__(self, pub: zmq.Socket, is_server: Callable[[Cred], bool]) -> None:
        """``pub``: a new XPUB, not bound yet; ``is_server``: whether a sender is the server."""
        pub.setsockopt(zmq.SNDHWM, 100_000)
        pub.setsockopt(zmq.XPUB_MANUAL, 1)
        self.pub = pub
        self.is_server = is_server
        self.topics: dict[bytes, int] = {}      # subscribed prefixes, with their subscriber counts
        self.refusals = Sparse(log, LOG_EVERY)

    def subscriptions(self) -> None:
        """Takes the (un)subscriptions waiting on the socket: the server's; and the end of one, when
        a subscriber is gone (libzmq says so without a sender: it ended the subscription itself)."""
        while True:
            try:
                frame = self.pub.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            msg = frame.bytes
            if not msg or msg[0] > 1:
                continue
            topic, cred = msg[1:], peercred.credentials(frame)
            if self.is_server(cred):
                self.pub.setsockopt(zmq.SUBSCRIBE if msg[0] == 1 else zmq.UNSUBSCRIBE, topic)
            elif cred is not None or msg[0] == 1:
                who = f"pid {cred[2]}" if cred is not None else "a non-ipc peer"
                self.refusals.warning(None, f"chain: refused a subscription to the events from {who}: only the "
                                            f"server subscribes")
                continue
            self.topics[topic] = self.topics.get(topic, 0) + (1 if msg[0] == 1 else -1)
            if self.topics[topic] <= 0:
                del self.topics[topic]

    def publish(self, rows: list[Staged]) -> None:
        if not self.topics:
            return
        for row in rows:
            topic = f"actor.{row.head.actor_id}".encode()
            if not any(topic.startswith(t) for t in self.topics):
                continue
            meta = {"seq": row.seq, "type": row.type, "hash": row.hash.hex(), "time_ns": row.time_ns,
                    "stamp": row.stamp.hex(), "sig": row.sig.hex() if row.sig else None}
            # a slow subscriber loses what it cannot take and sees the gap in seq numbers
            with contextlib.suppress(zmq.Again):
                self.pub.send_multipart([topic, orjson.dumps(meta), row.data], zmq.NOBLOCK)

"""The chain's XPUB (``run/events.sock``): each stored event, under the topic ``actor.<id>``,
to whoever subscribed. Observers only: PUB drops what a slow subscriber cannot take, and
subscribers catch up from the store by sequence number."""

from __future__ import annotations

import contextlib

import orjson
import zmq

from .store import Staged


class Publisher:
    def __init__(self, pub: zmq.Socket) -> None:
        self.pub = pub
        self.topics: dict[bytes, int] = {}      # subscribed prefixes, with their subscriber counts

    def subscriptions(self) -> None:
        """Takes the (un)subscriptions waiting on the socket."""
        while True:
            try:
                msg = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg:
                topic = msg[1:]
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

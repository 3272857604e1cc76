"""Stored events relayed to the clients following them (`theater events --follow`).

The chain publishes each stored event on its XPUB under ``actor.<id>``; the server holds
one SUB for all followers and pushes to each without blocking. A follower that does not
read fast enough misses events (and is told how many, before the next one it gets, or as
soon as its queue has room if no other event comes); it catches up from the store by
sequence number, so none is lost to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import zmq

from .outbox import Outbox

# How often a "missed" notice that found the follower's queue full is tried again: a follower
# whose actor has gone quiet must still learn of its loss, without waiting for a next event.
MISSED_RETRY = 0.05


@dataclass
class Subscription:
    client: bytes
    actor: str
    missed: int = 0


class Relay:
    def __init__(self, outbox: Outbox, sub: zmq.Socket) -> None:
        self.outbox = outbox
        self.sock = sub
        self.subs: dict[str, Subscription] = {}
        self.retrying = False

    def subscribe(self, client: bytes, actor_id: str) -> str:
        sub_id = self.outbox.new_id()
        self.subs[sub_id] = Subscription(client, actor_id)
        self.sock.setsockopt(zmq.SUBSCRIBE, f"actor.{actor_id}".encode())
        return sub_id

    def unsubscribe(self, sub_id: str) -> None:
        entry = self.subs.pop(sub_id, None)
        if entry is not None and not any(s.actor == entry.actor for s in self.subs.values()):
            self.sock.setsockopt(zmq.UNSUBSCRIBE, f"actor.{entry.actor}".encode())

    def clients(self) -> set[bytes]:
        return {s.client for s in self.subs.values()}

    def drop(self, client: bytes) -> None:
        """Ends every subscription of ``client`` (its access was revoked, or it is gone)."""
        for sub_id in [i for i, s in self.subs.items() if s.client == client]:
            self.unsubscribe(sub_id)

    def published(self, frames: list[bytes]) -> None:
        topic, meta, data = frames[0], frames[1], frames[2]
        actor_id = topic.decode().removeprefix("actor.")
        header = None
        for sub_id, sub in list(self.subs.items()):
            if sub.actor != actor_id:
                continue
            header = header or {"k": "event", "actor": actor_id, "meta": orjson.loads(meta)}
            try:
                self._tell_missed(sub_id, sub)
                self.outbox.send_client(sub.client, {**header, "sub": sub_id}, data)
            except zmq.Again:
                sub.missed += 1
                self._retry_later()
            except zmq.ZMQError:
                self.unsubscribe(sub_id)      # the client is gone

    def _tell_missed(self, sub_id: str, sub: Subscription) -> None:
        if sub.missed:
            self.outbox.send_client(sub.client, {"k": "missed", "sub": sub_id, "count": sub.missed})
            sub.missed = 0

    def _retry_later(self) -> None:
        if not self.retrying:
            self.retrying = True
            self.outbox.later(MISSED_RETRY, self._retry)

    def _retry(self) -> None:
        """Tells each follower that lost events so, once its queue has room."""
        self.retrying = False
        for sub_id, sub in list(self.subs.items()):
            try:
                self._tell_missed(sub_id, sub)
            except zmq.Again:
                self._retry_later()
            except zmq.ZMQError:
                self.unsubscribe(sub_id)

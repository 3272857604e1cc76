"""The actor's mailbox: what arrives for it, admitted or refused, waiting for its turn.

Items are messages from other actors and clients (``send``, ``request``, channel traffic)
and news from the server (a child's exit). Each kind belongs to the handler that declared
it (``worker.handlers``); a kind no granted handler takes is refused with the reason. Items
that count against the mailbox limit are refused while it is full: a request gets an error
reply at once; the sender of a one-way message is told, at most every ``REFUSAL_NOTICE``.
A full episode is recorded when it starts and when it ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A sender whose one-way messages are refused hears of it at most this often.
REFUSAL_NOTICE = 0.02

Route = tuple[str, bytes | None]    # ("peer", identity) or ("control", None)


@dataclass(slots=True)
class Incoming:
    what: str                  # the kind: send | request | chan_open | chan_msg | chan_close | child_* ...
    header: dict[str, Any]
    payload: bytes
    route: Route

    @property
    def sender(self) -> str | None:
        kind, ident = self.route
        return ident.decode() if kind == "peer" and ident else None


Reply = Callable[..., None]          # (route, header, *frames, quiet=..., held=...) -> None
Record = Callable[[str, Any], None]  # (event type, value) -> None


class Mailbox:
    def __init__(self, actor_id: str, limit: int, reply: Reply, record: Record) -> None:
        self.actor_id = actor_id
        self.limit = limit
        self.items: deque[Incoming] = deque()
        self.refused = 0                       # turned away in the current full episode
        self._reply = reply
        self._record = record
        self._notified: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def admit(self, item: Incoming, counted: bool) -> None:
        """Queues ``item`` or refuses it; ``counted`` items are subject to the limit (news from the
        server is not: it is never refused)."""
        if not counted:
            self.items.append(item)
        elif len(self.items) >= self.limit:
            if not self.refused:          # an episode starts: recorded, and again when it ends
                self._record("limit/mailbox", {"event": "full", "mailbox": self.limit})
            self.refused += 1
            self.refuse(item, f"actor {self.actor_id}'s mailbox is full ({self.limit} messages)")
        else:
            if self.refused:
                self._record("limit/mailbox", {"event": "open", "refused": self.refused})
                self.refused = 0
            self.items.append(item)

    def put_local(self, what: str, header: dict[str, Any], payload: bytes) -> None:
        """A message from this actor to itself (always admitted: it is already running)."""
        self.items.append(Incoming(what, header, payload, ("peer", self.actor_id.encode())))

    def refuse(self, item: Incoming, error: str) -> None:
        """Turns a message away: a request gets an error reply; the sender of a one-way message
        is told (at most every REFUSAL_NOTICE per sender), so its next sends fail at once."""
        rid = item.header.get("rid")
        if rid is not None:
            self._reply(item.route, {"k": "reply", "rid": rid, "ok": False, "error": error}, quiet=True, held=False)
            return
        kind, ident = item.route
        now = time.monotonic()
        if kind == "peer" and ident is not None and now - self._notified.get(ident, 0.0) > REFUSAL_NOTICE:
            self._notified[ident] = now
            self._reply(item.route, {"k": "refused", "error": error}, quiet=True, held=False)

    def drop(self, reason: str) -> None:
        """Refuses everything still waiting (the actor is ending)."""
        while self.items:
            self.refuse(self.items.popleft(), reason)

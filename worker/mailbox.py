"""The actor's mailbox: what arrives for it, waiting for its turn.

Items are messages from other actors and clients (``send``, ``request``, channel traffic)
and news from the server (a child's exit). Each kind belongs to the handler that declared
it (``worker.handlers``); a kind no granted handler takes is refused with the reason.

A full mailbox (``[limits] mailbox`` items that count) slows its senders down; it refuses
nobody. Other actors' messages stop being read (``pause``): they wait in ZeroMQ's queues and
then in their senders' workers, whose ``send`` waits for room (``worker.outgoing``).
Messages relayed by the server (from clients) cannot be left unread, since the control
socket carries everything: they wait in ``waiting`` and are let in first as room frees; only
past a second mailbox-full of them is one refused, to its client. A client's one-way message
is answered once its call has run and is in the chain (like a peer's ``took``): one that dies
in the mailbox with a killed worker is then an error to its client (the server's, for what a
dead worker never answered), not an ok for a message nobody ran. Reading resumes once a
quarter of the mailbox is free (one pause per burst, not one per message). Each full episode is recorded when it
starts and when it ends. What is refused (the actor is ending, a message is too large) is
refused to its sender: a request with an error reply, a one-way message with a ``refused``
notice its sender records. The one-way messages an actor took are acknowledged to their
senders (``took``, once the calls they ran are safe: worker.chainlink), a few at a time: so a sender
knows which of its messages died with a receiver that was killed, and records them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Route = tuple[str, bytes | None]    # ("peer", libzmq's routing id) or ("control", None)

# A busy actor acknowledges what it took once this many wait to be told (and always before it
# waits for more: ``acknowledge(now=True)``): one notice for a burst, not one per item.
TOLD_EVERY = 64


@dataclass(slots=True)
class Incoming:
    what: str                  # the kind: send | request | chan_open | chan_msg | chan_close | child_* ...
    header: dict[str, Any]
    payload: bytes
    route: Route
    refused: bool = False      # its sender was told it was turned away: not acknowledged as taken

    @property
    def sender(self) -> str | None:
        """The actor that sent it (its ticket checked: worker.senders); None for a client's."""
        return self.header.get("from") if self.route[0] == "peer" else None


Reply = Callable[..., None]          # (route, header, *frames, quiet=..., held=...) -> None
Record = Callable[[str, Any], None]  # (event type, value) -> None


class Mailbox:
    def __init__(self, actor_id: str, limit: int, reply: Reply, record: Record,
                 pause: Callable[[bool], None] = lambda _: None) -> None:
        self.actor_id = actor_id
        self.limit = limit
        self.reopen_at = limit - max(1, limit // 4)
        self.items: deque[Incoming] = deque()
        self.waiting: deque[Incoming] = deque()    # from clients, while the mailbox is full
        self.full_since: float | None = None       # the current full episode began (monotonic)
        self.closing = False                        # the actor ends: everything is taken, to be refused
        self.closed: str | None = None              # ... together (``drop``), and after that, at once: why
        self._reply = reply
        self._record = record
        self._pause = pause
        self._own = actor_id.encode()               # the route of this actor's messages to itself
        self._taken: dict[bytes, int] = {}          # a peer's routing id -> its one-way messages taken
        self._untold = 0                            # ... in all

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def admit(self, item: Incoming, counted: bool) -> None:
        """Queues ``item``; ``counted`` items are subject to the limit (news from the server is not)."""
        if counted and self.closed is not None:
            self.refuse(item, self.closed)
            return
        if not counted or self.closing:
            self.items.append(item)
            return
        if item.route[0] == "control" and len(self.items) >= self.limit:
            if len(self.waiting) >= self.limit:
                self.refuse(item, f"actor {self.actor_id}'s mailbox is full ({self.limit} messages, and "
                                  f"{len(self.waiting)} more from clients waiting for room)")
            else:
                self.waiting.append(item)
            return
        self._let_in(item)

    def _let_in(self, item: Incoming) -> None:
        self.items.append(item)
        if self.full_since is None and len(self.items) >= self.limit:
            self.full_since = time.monotonic()
            self._pause(True)       # first: recording may wait (the event rate, the chain), serving the sockets
            self._record("limit/mailbox", {"event": "full", "mailbox": self.limit})

    def take(self) -> Incoming:
        """The next item to run; lets in what waits for the room it leaves."""
        item = self.items.popleft()
        while self.waiting and len(self.items) < self.limit:
            self._let_in(self.waiting.popleft())
        if self.full_since is not None and len(self.items) <= self.reopen_at and not self.waiting:
            full_for = time.monotonic() - self.full_since
            self.full_since = None
            self._record("limit/mailbox", {"event": "open", "full_ms": round(full_for * 1000)})
            self._pause(False)
        return item

    def done(self, item: Incoming, ran: bool) -> None:
        """``item`` ran, or failed the actor (not ``ran``): a peer's one-way message is acknowledged
        with the next ``acknowledge`` either way (it was taken); a client's is answered once the
        chain holds its call, if it ran (else the server tells the client how the actor ended)."""
        kind, ident = item.route
        if kind == "control" and item.what == "send" and "rid" in item.header and not item.refused:
            if ran:
                self._reply(item.route, {"k": "reply", "rid": item.header["rid"], "ok": True}, quiet=True)
        elif kind == "peer" and ident not in (None, self._own) and not item.refused and "rid" not in item.header:
            self._taken[ident] = self._taken.get(ident, 0) + 1
            self._untold += 1

    def acknowledge(self, now: bool) -> None:
        """Tells each peer how many of its one-way messages were taken since the last time, once
        the chain holds the calls they ran (not hurried: see ``Loop.reply``'s ``prompt``): ``now``
        (the actor is about to wait, or ends), else once TOLD_EVERY are untold."""
        if not now and self._untold < TOLD_EVERY:
            return
        for ident, n in self._taken.items():
            self._reply(("peer", ident), {"k": "took", "count": n}, quiet=True, prompt=False)
        self._taken.clear()
        self._untold = 0

    def put_local(self, what: str, header: dict[str, Any], payload: bytes) -> None:
        """A message from this actor to itself (always admitted: it is already running)."""
        self.items.append(Incoming(what, {**header, "from": self.actor_id}, payload, ("peer", self._own)))

    def refuse(self, item: Incoming, error: str, count: int = 1) -> None:
        """Turns a message away: a request gets an error reply; the sender of a one-way message a
        ``refused`` notice (its worker records it)."""
        item.refused = True
        rid = item.header.get("rid")
        if rid is not None:
            self._reply(item.route, {"k": "reply", "rid": rid, "ok": False, "code": "refused", "error": error},
                        quiet=True, held=False)
            return
        kind, ident = item.route
        if kind == "peer" and ident not in (None, self._own):
            self._reply(item.route, {"k": "refused", "error": error, "count": count}, quiet=True, held=False)

    def drop(self, reason: str) -> None:
        """Refuses everything still waiting (the actor is ending): one notice per sender of one-way
        messages, with how many."""
        one_way: dict[bytes, tuple[Incoming, int]] = {}
        for queue in (self.items, self.waiting):
            while queue:
                item = queue.popleft()
                ident = item.route[1]
                if "rid" in item.header or item.route[0] != "peer" or ident is None:
                    self.refuse(item, reason)
                else:
                    first, n = one_way.get(ident, (item, 0))
                    one_way[ident] = (first, n + 1)
        for first, n in one_way.values():
            self.refuse(first, reason, n)
        self.closed = reason

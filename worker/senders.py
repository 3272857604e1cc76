"""Which actor a message on this worker's inbox is from: the one its ticket vouches for.

Any process of the workers' user can connect to an inbox and write anything, a sender's
name included; and libzmq, not the sender, picks each connection's routing id, so nobody can
take over another actor's connection (and the replies on it). A peer's message names its
sender (``from``) with the ticket the server gave that sender for this incarnation (``t``,
see ``theater.tickets``). A message without a good ticket, or of a kind peers do not send,
is dropped, counted (``inspect`` shows ``dropped`` in the actor's stats) and logged (one line
a second at most): it is nobody's, so there is nobody to refuse it to.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from theater import tickets

log = logging.getLogger("theater.worker")

# Refusals are logged at most this often.
LOG_EVERY = 1.0
# Tickets already checked (one per peer that wrote to us), kept so a message costs a lookup,
# not an HMAC; forgotten all at once when there are more.
KNOWN_MAX = 4096


class Senders:
    def __init__(self, name: str) -> None:
        self.name = name
        self.key: bytes | None = None           # from the server's answer to our hello
        self._known: dict[str, str] = {}        # ticket -> the sender it vouches for
        self.dropped = 0                        # reported with the heartbeat (``inspect``'s stats)
        self._logged_at = 0.0
        self._unlogged = 0

    def vouched(self, header: dict[str, Any]) -> bool:
        """Whether ``header`` (a message read from the inbox) is a peer's message, from the
        actor it names; logs it if not."""
        if header["k"] != "msg":
            return self._drop(f"{header['k']!r} message (peers send only msg)")
        sender, ticket = header.get("from"), header.get("t")
        if not (isinstance(sender, str) and isinstance(ticket, str)):
            return self._drop("message naming no sender, or with no ticket")
        if self._known.get(ticket) == sender:
            return True
        if self.key is None or not tickets.valid(self.key, sender, ticket):
            return self._drop(f"message claiming to be from {sender[:80]!r} with a ticket the server did not give it")
        if len(self._known) >= KNOWN_MAX:
            self._known.clear()
        self._known[ticket] = sender
        return True

    def _drop(self, what: str) -> bool:
        self.dropped += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY:
            self._unlogged += 1
            return False
        more = f" (and {self._unlogged} more since the last line)" if self._unlogged else ""
        log.warning("%s: dropped a %s on its inbox%s", self.name, what, more)
        self._logged_at, self._unlogged = now, 0
        return False

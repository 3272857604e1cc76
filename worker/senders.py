"""Which actor a message on this worker's inbox is from: the one its ticket vouches for.

Any process of the workers' user can connect to an inbox and write anything, a sender's
name included; and libzmq, not the sender, picks each connection's routing id, so nobody can
take over another actor's connection (and the replies on it). A peer's message names its
sender (``from``) with the ticket the server gave that sender for this incarnation (``t``,
see ``theater.tickets``). What comes back on our connections to peers may only answer what
we sent. Anything else is dropped, counted (``inspect`` shows ``dropped`` in the actor's
stats) and logged (one line a second at most): it is nobody's, so there is nobody to refuse
it to.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from theater import tickets

log = logging.getLogger("theater.worker")

# What a peer may ask of us (``msg`` kinds), and answer us with.
PEER_ASKS = frozenset({"send", "request", "chan_open", "chan_msg", "chan_close"})
PEER_ANSWERS = frozenset({"reply", "refused", "took"})
# An actor id is a UUID (36 characters): a longer sender is nobody, and not worth an HMAC.
SENDER_MAX = 64
# Refusals are logged at most this often, and this much of what was dropped.
LOG_EVERY = 1.0
SHOWN = 200
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
        if header["k"] != "msg" or header.get("what") not in PEER_ASKS:
            return self.drop(f"{header['k']!r} message ({header.get('what')!r}): peers send only msg "
                             f"({', '.join(sorted(PEER_ASKS))})")
        sender, ticket = header.get("from"), header.get("t")
        if not (isinstance(sender, str) and len(sender) <= SENDER_MAX and isinstance(ticket, str)
                and len(ticket) == tickets.TICKET_CHARS):
            return self.drop("message naming no sender, or with no ticket")
        if self._known.get(ticket) == sender:
            return True
        if self.key is None or not tickets.valid(self.key, sender, ticket):
            return self.drop(f"message claiming to be from {sender!r} with a ticket the server did not give it")
        if len(self._known) >= KNOWN_MAX:
            self._known.clear()
        self._known[ticket] = sender
        return True

    def answer(self, header: dict[str, Any]) -> bool:
        """Whether ``header`` (a message from a peer we wrote to) answers us; logs it if not."""
        return header["k"] in PEER_ANSWERS or self.drop(f"{header['k']!r} message from a peer it wrote to "
                                                         f"(peers answer only with reply, refused or took)")

    def drop(self, what: str) -> bool:
        """Counts (and now and then logs) a message nobody vouches for; False."""
        self.dropped += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY:
            self._unlogged += 1
            return False
        more = f" (and {self._unlogged} more since the last line)" if self._unlogged else ""
        log.warning("%s: dropped a %s%s", self.name, what[:SHOWN], more)
        self._logged_at, self._unlogged = now, 0
        return False

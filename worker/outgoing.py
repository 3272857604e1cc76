"""One-way messages on their way to one peer: handed to ZeroMQ while its queue has room, kept
here, in order, while it has none. The peer acknowledges what it took (``took``) and refuses
what it turns away, so what neither acknowledged nor refused when the peer goes (killed with
messages in its queues) is known, and counted to the sender as not delivered.

A ``send`` is accepted at once and its message leaves once the chain holds the events before
it (``chainlink``). It then goes to the peer's connection; if ZeroMQ's queue towards the peer
is full (the peer's mailbox is full, so it stopped reading: ``Loop.pause_inbox``), it waits
here and goes when the connection has room again (the loop watches for that). ``Peers.send``
waits while too many are on their way (``crowded``): a slow receiver slows its senders down
and never makes them lose a message. What a peer can no longer take (it stopped or
restarted first) is counted, and the sender records it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import zmq

from .wire import send

# Messages (and bytes) on their way to one peer, in this worker, before ``send`` waits for
# room; it goes on once half of them are gone (one wait per burst, not one per message).
# Beyond these the peer's own bounds apply: ZeroMQ's queues (PEER_HWM in worker.peers, and
# the peer's receive queue) and its mailbox limit.
MAX_UNSENT = 1000
MAX_UNSENT_BYTES = 64 << 20

log = logging.getLogger("theater.worker")

Watch = Callable[[zmq.Socket, Callable[[], None] | None], None]


class Outgoing:
    def __init__(self, peer: str, sock: zmq.Socket, watch: Watch, stamp: dict[str, str],
                 incarnation: int | None = None) -> None:
        self.peer = peer
        self.sock = sock
        self.incarnation = incarnation    # the peer's that the server resolved (None: not known)
        self.stamp = stamp          # on each message to the peer: our id and our ticket to it
        self.unsent = 0             # accepted by send, not yet handed to ZeroMQ (held or queued)
        self.unsent_bytes = 0
        self.queue: deque[tuple[list[bytes], int]] = deque()
        self.unanswered = 0         # handed to ZeroMQ, neither acknowledged nor refused since
        self.gone: str | None = None    # why the peer can no longer take them
        self._watch = watch

    @property
    def crowded(self) -> bool:
        return self.unsent >= MAX_UNSENT or self.unsent_bytes >= MAX_UNSENT_BYTES

    @property
    def roomy(self) -> bool:
        """Whether a waiting sender may go on (hysteresis: see MAX_UNSENT)."""
        return self.unsent <= MAX_UNSENT // 2 and self.unsent_bytes <= MAX_UNSENT_BYTES // 2

    def accepted(self, size: int) -> None:
        """``send`` took a message of ``size`` bytes; it comes to ``put`` when the chain lets it go."""
        self.unsent += 1
        self.unsent_bytes += size

    def put(self, frames: list[bytes], size: int) -> None:
        """The chain released a message: hand it to ZeroMQ, or queue it behind those waiting."""
        if self.gone is not None:       # already counted as undelivered when the peer went
            return
        if not self.queue:
            try:
                send(self.sock, frames)
            except zmq.Again:
                self._watch(self.sock, self.flush)
            except zmq.ZMQError as e:     # not expected: the socket is closed only once gone is set
                log.warning("a message to actor %s was dropped: %s", self.peer, e)
                self._sent(size)
                return
            else:
                self._sent(size)
                self.unanswered += 1
                return
        self.queue.append((frames, size))

    def flush(self) -> None:
        """The connection has room: send what waits, in order, as far as it goes."""
        queue = self.queue
        while queue:
            frames, size = queue[0]
            try:
                send(self.sock, frames)
            except zmq.Again:
                return
            queue.popleft()
            self._sent(size)
            self.unanswered += 1
        self._watch(self.sock, None)

    def _sent(self, size: int) -> None:
        self.unsent -= 1
        self.unsent_bytes -= size

    def answered(self, claimed: int) -> int:
        """How many of ``claimed`` messages a peer's refusal (or acknowledgement) may count: no
        more than were handed to it and not answered before (a peer cannot fill our chain with
        refusals of nothing)."""
        counted = min(claimed, self.unanswered)
        self.unanswered -= counted
        return counted

    def lose(self, why: str) -> int:
        """The peer is gone: how many messages it did not take (those still here are dropped;
        those it neither acknowledged nor refused died in its queues)."""
        lost = self.unsent + self.unanswered
        if self.queue:
            self._watch(self.sock, None)
        self.gone = why
        self.queue.clear()
        self.unsent = self.unsent_bytes = self.unanswered = 0
        return lost

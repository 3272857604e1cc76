"""This actor's side of the chain: number, link and ship every event, keep it until it is durable.

An event is numbered when it happens, but encoded (canonical CBOR) and hashed only when
its batch ships: that work is done while the actor waits anyway, not between a request
and its reply. The worker hashes each event itself (the same function a replay uses),
sends events in batches to the chain process, and keeps every one until the chain
acknowledges its sequence number as durable (the chain acknowledges lazily, in its own
time, unless asked to ``sync``). After a chain restart it sends them all again; the chain
ignores what it already has. Unacknowledged events are bounded: past ``MAX_UNACKED``
the actor takes no new work until the chain catches up.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from theater import protocol
from theater.events import encode_data, event_hash

from .wire import send

# Back-pressure point: how many events an actor may have in flight to the chain before it
# stops taking new messages. 20k events is ~1 s of the chain's signed-and-durable rate.
MAX_UNACKED = 20_000
# One append message carries at most this many events (keeps messages well under 1 MiB).
BATCH = 256
# Events wait at most this long in the worker before they are sent: one message per busy
# actor per 5 ms instead of one per call, which is what lets the chain keep up with
# thousands of calls per second; a call's events are durable within ~10 ms (this, the
# chain's COMMIT_DELAY) and one fsync after it.
FLUSH_INTERVAL = 0.005
# Unacknowledged events older than this are sent again (covers a chain restart the
# server has not announced yet, and any message lost on the way).
RESEND_AFTER = 3.0


class ChainLink:
    def __init__(self, sock: zmq.Socket, actor_id: str, head_seq: int, head_hash: bytes | None,
                 on_bytes: Callable[[int], None]) -> None:
        self.sock = sock
        self.on_bytes = on_bytes            # told how many bytes each flush encoded (the byte-rate limit)
        self.actor_id = actor_id
        self.seq = head_seq                 # the last event emitted (-1: none yet)
        self.head = head_hash
        self.acked = head_seq               # the last event the chain holds durably
        self.pending: list[tuple[int, str, Any, int, bool]] = []   # (seq, type, value, time, state?)
        self.unacked: deque[tuple[int, dict[str, Any], bytes]] = deque()
        self.sent_at = 0.0
        self.pending_since = 0.0
        self.emitted = 0                    # total, for rate accounting
        # one-way messages waiting for the events that led to them to leave: (socket, frames, if refused)
        self.held: list[tuple[zmq.Socket, list[bytes], Callable[[], None]]] = []

    def emit(self, event_type: str, value: Any, state_changed: bool = False) -> None:
        """Numbers one event after the head and queues it; it is encoded and linked at flush."""
        self.seq += 1
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.append((self.seq, event_type, value, time.time_ns(), state_changed))
        self.emitted += 1
        # also inside one long call (no pump runs then): nothing waits longer than FLUSH_INTERVAL
        if len(self.pending) >= BATCH or time.monotonic() - self.pending_since > FLUSH_INTERVAL:
            self.flush()

    def send_after(self, sock: zmq.Socket, frames: list[bytes], refused: Callable[[], None]) -> None:
        """Sends a one-way message once the events recorded before it have left (at once if
        none wait): nobody sees an effect the chain could lose, and a burst of sends costs one
        batch, not one chain message each. ``refused`` runs if the socket's queue is full."""
        self.held.append((sock, frames, refused))
        if not self.pending:
            self._release()

    def _release(self) -> None:
        held, self.held = self.held, []
        for sock, frames, refused in held:
            try:
                send(sock, frames)
            except zmq.Again:
                refused()
            except zmq.ZMQError:        # the peer restarted meanwhile: lost like any message in flight
                pass

    def sync(self) -> None:
        """Sends what is pending and asks the chain to acknowledge at once (it otherwise
        acknowledges in its own time: see chain.service.ACK_DELAY)."""
        self.flush(sync=True)
        if self.unacked and not self.pending:
            self._send([], sync=True)

    def flush(self, sync: bool = False) -> None:
        """Encodes, hashes and links the pending events, sends them as one batch, then lets
        the messages held for them go."""
        if not self.pending:
            if self.held:
                self._release()
            return
        batch: list[tuple[dict[str, Any], bytes]] = []
        head = self.head
        for seq, event_type, value, t, state_changed in self.pending:
            data = encode_data(value)
            head = event_hash(self.actor_id, seq, head, event_type, data)
            # no parent: the chain links each event to its own head, and the hash proves they agree
            meta: dict[str, Any] = {"s": seq, "h": head.hex(), "y": event_type, "t": t}
            if state_changed:
                meta["st"] = 1
            batch.append((meta, data))
            self.unacked.append((seq, meta, data))
        self.pending = []
        self.head = head
        self.on_bytes(sum(len(d) for _, d in batch))
        self._send(batch, sync or self.backlog >= MAX_UNACKED // 2)
        self.sent_at = time.monotonic()
        if self.held:
            self._release()

    def flush_in(self, now: float) -> float | None:
        """Seconds until the pending events are due to be sent (None: nothing pending)."""
        if not self.pending:
            return None
        return max(0.0, self.pending_since + FLUSH_INTERVAL - now)

    def _send(self, batch: list[tuple[dict[str, Any], bytes]], sync: bool = False) -> None:
        """Never blocks: with the chain down, events stay in ``unacked`` and go again later."""
        header: dict[str, Any] = {"k": "append", "actor": self.actor_id, "events": [m for m, _ in batch],
                                  "sizes": [len(d) for _, d in batch]}
        if sync:
            header["sync"] = True
        with contextlib.suppress(zmq.Again):     # all the events' data in one frame: one send, not n
            send(self.sock, protocol.encode(header, b"".join(d for _, d in batch)))

    def on_ack(self, seq: int) -> None:
        if seq <= self.acked:
            return
        self.acked = seq
        while self.unacked and self.unacked[0][0] <= seq:
            self.unacked.popleft()

    def on_nack(self, head: int, error: str) -> bool:
        """The chain refused a batch. A gap (it lost what came before, e.g. in a restart) is
        mended by sending again from its head; a conflict is fatal (False)."""
        if not error.startswith("gap"):
            return False
        self.on_ack(head)
        self.resend()
        return True

    def resend(self) -> None:
        """Sends every unacknowledged event again, oldest first."""
        items = list(self.unacked)
        for i in range(0, len(items), BATCH):
            self._send([(m, d) for _, m, d in items[i:i + BATCH]], sync=i + BATCH >= len(items))
        self.sent_at = time.monotonic()

    def maybe_resend(self, now: float) -> None:
        if self.unacked and now - self.sent_at > RESEND_AFTER:
            self.resend()

    @property
    def backlog(self) -> int:
        return len(self.unacked) + len(self.pending)

    @property
    def congested(self) -> bool:
        return self.backlog >= MAX_UNACKED

    @property
    def settled(self) -> bool:
        return not self.pending and not self.unacked

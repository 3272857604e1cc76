"""This actor's side of the chain: number, link and ship every event, keep it until it is durable.

The worker hashes each event itself (the same function a replay uses), sends events in
batches to the chain process, and keeps every one until the chain acknowledges its
sequence number as durable. After a chain restart it sends them all again; the chain
ignores what it already has. Unacknowledged events are bounded: past ``MAX_UNACKED``
the actor takes no new work until the chain catches up.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import Any

import zmq

from theater import protocol
from theater.events import event_hash

# Back-pressure point: how many events an actor may have in flight to the chain before it
# stops taking new messages. 20k events is ~1 s of the chain's signed-and-durable rate.
MAX_UNACKED = 20_000
# One append message carries at most this many events (keeps messages well under 1 MiB).
BATCH = 256
# Events wait at most this long in the worker before they are sent: one message per busy
# actor per 5 ms instead of one per call, which is what lets the chain keep up with
# thousands of calls per second; a call's events are durable ~5 ms + one commit after it.
FLUSH_INTERVAL = 0.005
# Unacknowledged events older than this are sent again (covers a chain restart the
# server has not announced yet, and any message lost on the way).
RESEND_AFTER = 3.0


class ChainLink:
    def __init__(self, sock: zmq.Socket, actor_id: str, head_seq: int, head_hash: bytes | None) -> None:
        self.sock = sock
        self.actor_id = actor_id
        self.seq = head_seq                 # the last event emitted (-1: none yet)
        self.head = head_hash
        self.acked = head_seq               # the last event the chain holds durably
        self.pending: list[tuple[dict[str, Any], bytes]] = []
        self.unacked: deque[tuple[int, dict[str, Any], bytes]] = deque()
        self.sent_at = 0.0
        self.pending_since = 0.0
        self.emitted = 0                    # total, for rate accounting

    def emit(self, event_type: str, data: bytes, state_changed: bool = False) -> int:
        """Links one event (``data``: canonical CBOR) after the head and queues it for the chain."""
        seq = self.seq + 1
        h = event_hash(self.actor_id, seq, self.head, event_type, data)
        meta: dict[str, Any] = {"s": seq, "p": self.head.hex() if self.head else None, "h": h.hex(),
                                "y": event_type, "t": time.time_ns()}
        if state_changed:
            meta["st"] = 1
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.append((meta, data))
        self.seq, self.head = seq, h
        self.emitted += 1
        if len(self.pending) >= BATCH:
            self.flush()
        return seq

    def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        for meta, data in batch:
            self.unacked.append((meta["s"], meta, data))
        self._send(batch)
        self.sent_at = time.monotonic()

    def flush_in(self, now: float) -> float | None:
        """Seconds until the pending events are due to be sent (None: nothing pending)."""
        if not self.pending:
            return None
        return max(0.0, self.pending_since + FLUSH_INTERVAL - now)

    def _send(self, batch: list[tuple[dict[str, Any], bytes]]) -> None:
        """Never blocks: with the chain down, events stay in ``unacked`` and go again later."""
        header = {"k": "append", "actor": self.actor_id, "events": [m for m, _ in batch]}
        with contextlib.suppress(zmq.Again):
            self.sock.send_multipart(protocol.encode(header, *(d for _, d in batch)), flags=zmq.NOBLOCK)

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
            self._send([(m, d) for _, m, d in items[i:i + BATCH]])
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

"""This actor's side of the chain: number, link and ship every event; hold back every effect
until the events that led to it are out of this worker's reach.

An event is numbered when it happens, but encoded (canonical CBOR) and hashed only when
its batch ships: that work is done while the actor waits anyway, not between a request
and its reply. The worker hashes each event itself (the same function a replay uses),
sends events in batches to the chain process, on a unix stream of its own (theater.stream),
and keeps every one until the chain acknowledges its sequence number as durable. After a
chain restart it sends them all again (and on any new stream: what the last one carried
may have died with it); the chain ignores what it already has. Unacknowledged events are
bounded: past ``MAX_UNACKED`` the actor takes no new work until the chain catches up, and a
running call that records more waits for it (``Loop.wait_for_chain``); no new work is taken either
while the chain refuses events (``unavailable``: its disk is full), offering their
first batch again every ``RETRY_UNAVAILABLE`` and all of them once it is taken.

Effects: nothing leaves this worker (a reply, a one-way message, a channel message)
before every event emitted before it is safe from the death of any one process. Once
written to the stream, events are on the chain process's queue in the kernel: a worker
killed then cannot take them back, and a chain process killed then loses them but not
this worker, which sends them again to the next one. So an effect waits until its events
are written (``handed``), not until they are stored; with ``durability = "machine"``
(fsynced commits: also safe from a power cut), and while the chain refuses events or mends
a gap, it waits for their acknowledgement. An effect is *held*, then *sealed*
at the head it waits for: by the next batch of events that ships (a message sent during
a long call waits for the events up to that batch), by the end of its call, or at once
(a reply, after its call's result). Sealed effects go, in order, when the chain
holds their head (``safe``). Sealing ships the events at once, with the batch that
ships or at the next pump, so the calls of one burst share one batch and their effects
leave together; where an acknowledgement is awaited, it asks the chain for it promptly
(``sync``). Host calls that need an answer (a request, a spawn) wait in place
(``Loop.before_effect``). A worker killed before then leaves no effect the restarted actor
could repeat: it resumes from the last durable state, and nothing was seen of what came after.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from theater import protocol
from theater.stream import Closed, Stream

from .batches import Batch, Pending, append_message, encode_events

log = logging.getLogger("theater.worker")

# Back-pressure point: how many events an actor may have in flight to the chain before it
# stops taking new messages. 20k events is ~1 s of the chain's signed-and-durable rate.
MAX_UNACKED = 20_000
# One append message carries at most this many events (keeps messages well under 1 MiB).
BATCH = 256
# Events wait at most this long in the worker before they are sent: one message per busy
# actor per 5 ms instead of one per call, which is what lets the chain keep up with
# thousands of calls per second. An effect does not wait for it: sealing sends at once.
FLUSH_INTERVAL = 0.005
# Unacknowledged events older than this are sent again (covers a chain restart the
# server has not announced yet, and any message lost on the way).
RESEND_AFTER = 3.0
# While the chain refuses events (its disk is full), they are offered again this often.
RETRY_UNAVAILABLE = 1.0
# While the chain's stream cannot be reached (it restarts), connecting is tried this often.
RECONNECT_EVERY = 0.05

Release = Callable[[], None]       # sends one held effect (it handles its own errors)
# Tells the loop to call ``on_ready(events)`` when ``fd`` is readable (and writable, if
# asked); None: to stop watching it.
Watch = Callable[[int, Callable[[int], None] | None, bool], None]


class ChainLink:
    def __init__(self, path: str, actor_id: str, head_seq: int, head_hash: bytes | None,
                 on_bytes: Callable[[int], None], handoff: bool, watch: Watch,
                 on_message: Callable[[list[bytes]], None]) -> None:
        self.path = path                    # the chain's stream socket
        self.watch = watch
        self.on_message = on_message        # what the chain says on the stream (acknowledgements)
        self.handoff = handoff              # effects may leave once their events are written (see above)
        self.stream: Stream | None = None
        self.marks: deque[tuple[int, int]] = deque()   # (stream byte count, last seq) of each batch written
        self.handed = head_seq              # the last event written to the current stream
        self.on_bytes = on_bytes            # told how many bytes each flush encoded (the byte-rate limit)
        self.actor_id = actor_id
        self.seq = head_seq                 # the last event emitted (-1: none yet)
        self.head = head_hash
        self.acked = head_seq               # the last event the chain holds durably
        self.pending: list[Pending] = []
        self.unacked: deque[tuple[int, dict[str, Any], bytes]] = deque()
        self.resend_at = 0.0
        self.pending_since = 0.0
        self.emitted = 0                    # total, for rate accounting
        # effects waiting for the chain: [seq it waits for (None until sealed), what sends it]
        self.held: deque[list[Any]] = deque()
        self.sync_wanted = False            # something sealed waits: ship its events now
        self.refusal: str | None = None     # why the chain refuses our events, while it does
        self.mending: int | None = None     # a resend in flight: the last event it sent again
        self.sent = head_seq                # the last event sent to the chain
        self._releasing = False
        self._resending = False

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

    # ---- effects ---------------------------------------------------------------------------

    def hold(self, release: Release) -> None:
        """Queues an effect; ``release`` sends it once it is sealed and the chain holds every
        event up to its seal."""
        self.held.append([None, release])

    def seal(self, prompt: bool = True) -> None:
        """Everything held so far waits for the events emitted so far (the end of a call, a reply);
        ``prompt``: and the chain is asked to acknowledge them at once, not in its own time."""
        if self.held and self.held[-1][0] is None:
            self._mark()
            if self.safe >= self.seq:
                self._release()
            elif prompt or self.handing:
                self.sync_wanted = True

    def _mark(self) -> None:
        for item in reversed(self.held):
            if item[0] is not None:
                break
            item[0] = self.seq

    def _release(self) -> None:
        """Sends the sealed effects the chain's acknowledgements have made safe, in order."""
        if self._releasing:             # a failed send records an event, which may pump: no re-entry
            return
        self._releasing = True
        try:
            held = self.held
            safe = self.safe
            while held and held[0][0] is not None and held[0][0] <= safe:
                held.popleft()[1]()
        finally:
            self._releasing = False

    @property
    def handing(self) -> bool:
        """Whether an event written to the stream is safe (see above): not while the chain
        refuses events or a resend mends a gap (what it was written may be refused)."""
        return self.handoff and self.refusal is None and self.mending is None and self.stream is not None

    @property
    def safe(self) -> int:
        """The last event out of this worker's reach: acknowledged, or written if ``handing``."""
        return max(self.acked, self.handed) if self.handing else self.acked

    @property
    def durable(self) -> bool:
        """Whether every event emitted so far is safe: an effect may follow them."""
        return self.safe >= self.seq

    # ---- shipping ----------------------------------------------------------------------------

    def sync(self, ack: bool = False) -> None:
        """Sends what is pending; ``ack`` (or unless ``handing``): and asks the chain to
        acknowledge at once (it otherwise acknowledges in its own time: see
        chain.acks.ACK_DELAY)."""
        self.sync_wanted = False
        ack = ack or not self.handing
        if self.pending:
            self.flush(sync=ack)
        elif self.unacked and ack:
            self._send([], sync=True)

    def flush(self, sync: bool = False) -> None:
        """Encodes, hashes and links the pending events and sends them as one batch; the effects
        held meanwhile wait for it (and ask for its prompt acknowledgement)."""
        if not self.pending:
            return
        batch, self.head = encode_events(self.actor_id, self.head, self.pending)
        self.unacked.extend((meta["seq"], meta, data) for meta, data in batch)
        self.pending = []
        self.on_bytes(sum(len(d) for _, d in batch))
        if self.held and self.held[-1][0] is None:
            self._mark()
            sync = sync or not self.handing
            self.sync_wanted = False
        # while the chain refuses, they wait for the next retry; while a resend mends a gap,
        # they follow it once it is acknowledged (sent now, they would only meet the gap)
        if self.refusal is None and self.mending is None:
            self._send(batch, sync or self.backlog >= MAX_UNACKED // 2)
            self.resend_at = time.monotonic() + RESEND_AFTER

    def flush_in(self, now: float) -> float | None:
        """Seconds until the pending events are due to be sent (None: nothing pending)."""
        if not self.pending:
            return None
        return max(0.0, self.pending_since + FLUSH_INTERVAL - now)

    def _send(self, batch: Batch, sync: bool = False) -> None:
        """Never blocks: with the chain down, events stay in ``unacked`` and go again later."""
        if batch:
            self.sent = max(self.sent, batch[-1][0]["seq"])
        fresh = self.stream is None
        stream = self._connected()
        if stream is None:
            return
        if fresh and self.unacked and not self._resending:
            self._rewrite()         # what went before went nowhere that lasts: all of it, in order
            return
        try:
            end = stream.send(append_message(self.actor_id, batch, sync))
        except Closed as e:
            self._disconnect(str(e))
            return
        if batch:
            self.marks.append((end, batch[-1][0]["seq"]))
        if stream.out:
            self.watch(stream.fileno(), self._on_stream, True)
        self._written()

    # ---- the stream ----------------------------------------------------------------------------

    def _connected(self) -> Stream | None:
        if self.stream is None:
            try:
                self.stream = Stream.connect(self.path, protocol.MAX_MESSAGE)
            except OSError as e:        # the chain restarts: what is not acknowledged goes again later
                log.debug("actor %s: cannot reach the chain's stream: %s", self.actor_id, e)
                return None
            self.watch(self.stream.fileno(), self._on_stream, False)
        return self.stream

    def _disconnect(self, why: str) -> None:
        """The chain's end is gone (it died): what it did not acknowledge goes to the next one."""
        if self.stream is None:
            return
        log.info("actor %s: the chain's stream closed (%s)", self.actor_id, why)
        self.watch(self.stream.fileno(), None, False)
        self.stream.close()
        self.stream = None
        self.marks.clear()
        self.handed = self.acked

    def _on_stream(self, events: int) -> None:
        stream = self.stream
        if stream is None:
            return
        try:
            if events & zmq.POLLOUT and stream.flush():
                self.watch(stream.fileno(), self._on_stream, False)
            self._written()
            if events & zmq.POLLIN:
                for frames in stream.receive():
                    self.on_message(frames)
        except Closed as e:
            self._disconnect(str(e))

    def _written(self) -> None:
        """Advances ``handed`` over the batches the kernel took, and lets out what that made safe."""
        stream, marks = self.stream, self.marks
        if stream is None:
            return
        while marks and marks[0][0] <= stream.written:
            self.handed = max(self.handed, marks.popleft()[1])
        if self.held and self.handing:
            self._release()

    def take_acks(self) -> None:
        """Reads what the chain has said, when an effect may be waiting on an acknowledgement."""
        if self.stream is not None and self.held and not self.handing:
            self._on_stream(zmq.POLLIN)

    def retry_in(self, now: float) -> float | None:
        """Seconds until events not acknowledged are due to go again (None: none wait)."""
        return max(0.0, self.resend_at - now) if self.unacked else None

    def on_ack(self, seq: int) -> None:
        self._acked(seq)
        if self.refusal is not None:        # it took our probe: the rest follows at once
            log.warning("actor %s: the chain takes its events again", self.actor_id)
            self.refusal = None
            self.resend()

    def _acked(self, seq: int) -> None:
        if seq <= self.acked:
            return
        self.acked = seq
        while self.unacked and self.unacked[0][0] <= seq:
            self.unacked.popleft()
        if self.mending is not None and seq >= self.mending:
            self.mending = None             # mended: what was flushed meanwhile goes now
            unsent = [(m, d) for s, m, d in self.unacked if s > self.sent]
            for i in range(0, len(unsent), BATCH):
                self._send(unsent[i:i + BATCH], sync=i + BATCH >= len(unsent))
        if self.held:
            self._release()

    def on_nack(self, head: int, error: str) -> bool:
        """The chain refused a batch. A gap (it lost what came before, e.g. in a restart) is
        mended by sending again from its head; while it cannot write (``unavailable``) the
        events are kept and offered again later; anything else is fatal (False)."""
        kind = error.split(":", 1)[0]
        if kind == "gap":
            # every batch in flight when the chain lost its tail is refused: mend once (a resend
            # per refusal made thousands of duplicates), and hold new batches until it is done
            self.on_ack(head)
            if self.mending is None:
                self.resend()
            return True
        if kind == "unavailable":
            self._acked(head)
            if self.refusal is None:
                log.error("actor %s: the chain refuses its events (%s); keeping them and taking no new work "
                          "until it takes them", self.actor_id, error)
            self.refusal = error
            self.resend_at = time.monotonic() + RETRY_UNAVAILABLE
            return True
        return False

    def restarted(self) -> None:
        """The server says a new chain process runs (the old one lost what it had not stored)."""
        self._disconnect("the chain process restarted")
        if self.unacked:
            log.info("actor %s: the chain process restarted: sending %d unacknowledged events again",
                     self.actor_id, len(self.unacked))
            self._rewrite()

    def resend(self) -> None:
        """Sends every unacknowledged event again, oldest first; new batches wait until the chain
        acknowledges the last of them (``mending``: the chain refused some)."""
        self.mending = self.unacked[-1][0] if self.unacked else None
        self._rewrite()

    def _rewrite(self) -> None:
        """Writes every unacknowledged event, oldest first: on a new stream, all of them must be
        on it before ``handed`` may count anything written there."""
        items = list(self.unacked)
        self.marks.clear()                  # what was written before may have been lost or refused
        self.handed = self.acked
        self._resending = True
        try:
            for i in range(0, len(items), BATCH):
                self._send([(m, d) for _, m, d in items[i:i + BATCH]], sync=i + BATCH >= len(items))
        finally:
            self._resending = False
        # no stream yet (the new chain process does not listen yet): try again soon
        self.resend_at = time.monotonic() + (RECONNECT_EVERY if self.stream is None else
                                             RETRY_UNAVAILABLE if self.refusal else RESEND_AFTER)

    def maybe_resend(self, now: float) -> None:
        if not self.unacked or now < self.resend_at:
            return
        if self.refusal is not None:        # one batch asks whether the chain takes events again
            self._send([(m, d) for _, m, d in itertools.islice(self.unacked, BATCH)], sync=True)
            self.resend_at = now + RETRY_UNAVAILABLE
            return
        self.resend_at = now + RESEND_AFTER
        if self.stream is None:             # a new stream carries them all (see _send)
            self._rewrite()
        elif not self.stream.out:           # the stream loses nothing: ask where the chain stands
            log.debug("actor %s: no acknowledgement in time for %d events: asking the chain", self.actor_id,
                      len(self.unacked))
            self._send([], sync=True)

    @property
    def backlog(self) -> int:
        return len(self.unacked) + len(self.pending)

    @property
    def backed_up(self) -> bool:
        """Whether MAX_UNACKED events wait for the chain: the actor records no more until it catches up."""
        return self.backlog >= MAX_UNACKED

    @property
    def congested(self) -> bool:
        return self.backed_up or self.refusal is not None

    @property
    def settled(self) -> bool:
        return not self.pending and not self.unacked

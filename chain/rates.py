"""The chain's own hold on each actor's event rate, against a worker that does not slow itself.

A worker paces its actor below ``[limits] events_per_second`` and ``event_bytes_per_second``
(worker.throttle), but the worker is the untrusted side: one that runs the actor's code
outside wasm (an escape, a bug) could write events onto its stream at any rate and take the
chain's CPU and the disk from every other actor. So the chain keeps buckets per actor too,
fed by the same limits (the server's ``bind`` carries them), with room to spare so that an
honest worker never meets them: a rate a quarter above the manifest's (and ``SLACK_EVENTS``
more), a burst of ``BURST`` seconds of it (a worker's own bucket holds one second; its
batches come late when the chain was busy), and ``BACKLOG`` events more whenever the chain
takes events again after it could not (a new worker, a new chain process, writes resumed
after a full disk: a worker then sends at once every event the chain has not acknowledged).

A message costs its events (at least one: an empty ``sync`` still makes the chain commit)
and its bytes: the events' data, as the worker counts them, and the header beyond
``HEADER_ALLOWANCE`` an event. It may leave a bucket in debt (one event larger than the
bucket still passes); the chain then leaves that worker's stream unread until the debt is
repaid (chain.streams ``hold``): its writes wait in the kernel, then in the worker, whose
effects wait for their events; nothing is lost or refused. An honest worker's large event
is held too, for less time than its own throttle then makes it wait: only a hold that ends
with more written meanwhile slowed a worker down (``kept``). Each time an actor is slowed, a
line is logged as it begins and one as it ends (its buckets full again), and it is counted
(``slowed``, in the ``stats`` query: the server's metrics).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from theater._units import human_size
from theater.bucket import Bucket
from theater.manifest import Limits

log = logging.getLogger("theater.chain")

# The chain's rate over the manifest's: a quarter more, and this many events a second, for
# what a worker sends beside its actor's events (its own limit/throttled, once a second; an
# empty sync, counted as one), which would otherwise eat a low rate's slack.
SLACK = 1.25
SLACK_EVENTS = 20.0
# Seconds of the chain's rate a bucket holds.
BURST = 2.0
# The most events an honest worker holds unacknowledged (worker.chainlink.MAX_UNACKED): what
# it may send at once when the chain takes events again.
BACKLOG = 20_000
# Header bytes an event may take unpaid (its seq, hash, type and time: ~170 bytes).
HEADER_ALLOWANCE = 512


@dataclass
class Pace:
    limits: tuple[int, int]         # the actor's: events, bytes a second
    events: Bucket
    bytes: Bucket
    since: float | None = None      # slowed since then (None: it is not)


class Rates:
    def __init__(self) -> None:
        self.paces: dict[str, Pace] = {}
        self.slowed = 0             # times an actor was slowed, since this process started

    def bind(self, header: dict[str, Any], now: float) -> None:
        """``bind {actor, pid, events_per_second, event_bytes_per_second}``: a new worker, with
        its actor's limits (a bind without them, a test's or a chain run by hand, gets the
        built-in defaults)."""
        self.drop(header["actor"], now)
        events = max(1, header.get("events_per_second") or Limits.events_per_second)
        size = max(1, header.get("event_bytes_per_second") or Limits.event_bytes_per_second)
        self.paces[header["actor"]] = Pace((events, size), Bucket(events * SLACK + SLACK_EVENTS, now, BURST, BACKLOG),
                                           Bucket(size * SLACK, now, BURST))

    def drop(self, actor_id: str, now: float) -> None:
        """Its worker is gone (unbound)."""
        pace = self.paces.pop(actor_id, None)
        if pace is not None and pace.since is not None:
            _ended(actor_id, pace, "its worker is gone", now)

    def resumed(self, now: float) -> None:
        """The chain stores events again after it could not: every worker's backlog comes."""
        for pace in self.paces.values():
            pace.events.take(-BACKLOG, now)

    def charge(self, actor_id: str | None, body: list[bytes], header: dict[str, Any] | None, now: float) -> float:
        """Charges one message of ``actor_id``'s worker (``header``: None if it does not decode);
        seconds until its stream may be read again (0: at once)."""
        pace = self.paces.get(actor_id) if actor_id is not None else None
        if pace is None or actor_id is None:
            return 0.0
        listed = header.get("events") if header is not None and header["k"] == "append" else None
        events = len(listed) if isinstance(listed, list) else 0
        if pace.since is not None and pace.events.full(now) and pace.bytes.full(now):
            _ended(actor_id, pace, "within its limits again", now)
            pace.since = None
        size = sum(map(len, body[1:])) + max(0, len(body[0]) - HEADER_ALLOWANCE * (events + 1))
        return max(pace.events.take(max(1, events), now), pace.bytes.take(size, now))

    def kept(self, actor_id: str | None, pid: int, now: float) -> None:
        """A hold on ``actor_id``'s stream ended with more written meanwhile: its worker is slowed."""
        pace = self.paces.get(actor_id) if actor_id is not None else None
        if pace is None or pace.since is not None:
            return
        pace.since = now
        self.slowed += 1
        log.warning("chain: actor %s (pid %d) writes events faster than its limits allow (%d events/s, %s/s): "
                    "its stream is read at %g events/s and %s/s at most until it slows down (its worker "
                    "should have slowed itself: a bug, or a compromised worker)", actor_id, pid,
                    pace.limits[0], human_size(pace.limits[1]), pace.events.rate, human_size(pace.bytes.rate))


def _ended(actor_id: str, pace: Pace, how: str, now: float) -> None:
    log.info("chain: actor %s is no longer slowed (%s, after %.1fs)", actor_id, how, now - (pace.since or now))

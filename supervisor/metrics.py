"""What the server counts for Prometheus, kept on the server's loop and published as snapshots.

The loop observes: an incarnation ready (spawn latency, from the launch to ``init`` done) or
ended (exits by kind, limit stops by limit, restarts), and a client request answered (its
latency, by kind); new actors refused by a bound are counted by ``room``. Once a second
(``health``) it publishes a ``Snapshot``, immutable, holding copies of every counter and
histogram and a row per actor. The exporter's HTTP thread
(``exporter``) only ever reads the latest snapshot, a single reference swapped whole: a scrape
sees one moment of the server, never a registry half-way through a change, and never holds
the loop up. What a snapshot cannot hold is read at scrape time, outside the loop: each
worker's memory and CPU (psutil) and the chain process's own counts (a ``stats`` query).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from theater._histogram import Histogram

from .directory import Directory
from .outbox import Outbox
from .registry import ActorRecord, Registry, Status
from .room import Room

# Seconds. A spawn is a fork plus instantiation (milliseconds), or a first compile (seconds).
SPAWN_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds. Most requests are answered in under a millisecond; `start` and `stop` take longer.
REQUEST_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)

# Exit reasons that are a limit stopping an actor, and the limit's name. (A limit that only
# slows an actor down, a full mailbox or throttled events, is recorded in its chain instead.)
LIMIT_STOPS = {"memory": "memory", "oom": "process_memory", "timeout": "call_timeout", "fuel": "fuel",
               "hang": "call_timeout"}


@dataclass(frozen=True)
class ActorRow:
    id: str
    name: str
    status: str
    pid: int | None
    mailbox: int
    restarts: int


@dataclass(frozen=True)
class Snapshot:
    actors: tuple[ActorRow, ...] = ()
    by_status: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    exits: dict[str, int] = field(default_factory=dict)
    limit_stops: dict[str, int] = field(default_factory=dict)
    spawn: Histogram = field(default_factory=lambda: Histogram(SPAWN_BUCKETS))
    requests: dict[str, Histogram] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)


class Metrics:
    """Counters kept by the loop; ``snapshot`` is what other threads may read."""

    def __init__(self, registry: Registry, directory: Directory, outbox: Outbox, room: Room) -> None:
        self.registry = registry
        self.room = room
        self.restarts = 0
        self.exits: dict[str, int] = {}
        self.limit_stops: dict[str, int] = {}
        self.spawn = Histogram(SPAWN_BUCKETS)
        self.requests: dict[str, Histogram] = {}
        self._restarts_seen: dict[str, int] = {}       # actor -> its restarts already counted
        self.snapshot = Snapshot()
        directory.listeners.append(self.lifecycle)
        outbox.on_answered = self.answered

    def lifecycle(self, what: str, rec: ActorRecord) -> None:
        """An incarnation is up, or its process has ended (see ``Directory.listeners``)."""
        self._count_restarts(rec)
        run = rec.run
        if what == "up" and run.ready is not None:
            self.spawn.observe(max(0.0, run.ready - run.launched))
        elif what == "down" and rec.last_exit is not None:
            kind = str(rec.last_exit.kind)
            self.exits[kind] = self.exits.get(kind, 0) + 1
            limit = LIMIT_STOPS.get(rec.last_exit.reason.removeprefix("start:"))
            if limit is not None:
                self.limit_stops[limit] = self.limit_stops.get(limit, 0) + 1

    def _count_restarts(self, rec: ActorRecord) -> None:
        """Restarts are counted from the record (every launch ends in "up" or "down", so each
        restart is seen once), not from the supervisor's decisions."""
        seen = self._restarts_seen.get(rec.actor_id, 0)
        if rec.restarts > seen:
            self.restarts += rec.restarts - seen
        self._restarts_seen[rec.actor_id] = rec.restarts

    def answered(self, kind: str, seconds: float) -> None:
        h = self.requests.get(kind)
        if h is None:
            h = self.requests[kind] = Histogram(REQUEST_BUCKETS)
        h.observe(seconds)

    def refresh(self) -> Snapshot:
        """Publishes what the loop knows now (called on the loop, once a second)."""
        rows = tuple(ActorRow(r.actor_id, r.name, str(r.status), r.pid, int(r.run.stats.get("mailbox", 0)),
                              r.restarts) for r in self.registry)
        by_status = dict.fromkeys(map(str, Status), 0)
        for row in rows:
            by_status[row.status] += 1
        for gone in self._restarts_seen.keys() - {r.id for r in rows}:
            del self._restarts_seen[gone]
        self.snapshot = Snapshot(rows, by_status, self.restarts, dict(self.exits), dict(self.limit_stops),
                                 self.spawn.copy(), {k: h.copy() for k, h in self.requests.items()},
                                 dict(self.room.refused))
        return self.snapshot

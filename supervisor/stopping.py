"""Stopping actors in OTP order: children before their parent, siblings in reverse start order,
each asked with SIGTERM and killed after its ``[restart] shutdown`` timeout (or at once, for
``brutal_kill``). Whoever asked waits for the process's exit (``then``), which supervision
reports through ``finished``.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from .registry import ActorRecord, Registry, Status

log = logging.getLogger("theater.server")

Done = Callable[[], None]


class Stopper:
    def __init__(self, registry: Registry, send_signal: Callable[[ActorRecord, int], None],
                 later: Callable[[float, Done], object]) -> None:
        self.registry = registry
        self.signal = send_signal
        self.later = later
        self.waiters: dict[str, list[Done]] = {}

    def stop(self, rec: ActorRecord, reason: str, then: Done, by_parent: bool = False) -> None:
        """Stops an actor and its children (children first, in reverse start order)."""
        def stop_self() -> None:
            self.one(rec, reason, then, by_parent)
        kids = [self.registry.actors[c] for c in reversed(rec.children) if c in self.registry.actors]
        self.many(kids, f"parent {rec.name} stopping", stop_self, by_parent=True)

    def many(self, recs: list[ActorRecord], reason: str, then: Done, by_parent: bool, flat: bool = False) -> None:
        """Stops ``recs`` one after another in the given order (each with its children unless
        ``flat``), then calls ``then``."""
        if not recs:
            then()
            return
        first, rest = recs[0], recs[1:]

        def next_one() -> None:
            self.many(rest, reason, then, by_parent, flat)
        if flat:
            self.one(first, reason, next_one, by_parent)
        else:
            self.stop(first, reason, next_one, by_parent)

    def one(self, rec: ActorRecord, reason: str, then: Done, by_parent: bool) -> None:
        run = rec.run
        if not rec.alive:
            if rec.status in (Status.STARTING, Status.RESTARTING, Status.RUNNING):
                rec.status = Status.EXITED
            then()
            return
        self.waiters.setdefault(rec.actor_id, []).append(then)
        if run.stop_reason is not None:
            return                          # already stopping; we just wait for it too
        run.stop_reason = reason
        run.stop_by_parent = by_parent
        rec.status = Status.STOPPING
        timeout = rec.manifest.restart.shutdown
        if timeout is None:                 # brutal_kill
            self.signal(rec, signal.SIGKILL)
            return
        self.signal(rec, signal.SIGTERM)

        def too_slow() -> None:
            if rec.alive and rec.run is run:
                log.warning("actor %s (%s) did not stop within %gs; killing it", rec.actor_id, rec.name, timeout)
                self.signal(rec, signal.SIGKILL)
        self.later(timeout, too_slow)

    def finished(self, rec: ActorRecord) -> None:
        """The stopped incarnation has exited: everyone waiting for it goes on."""
        if rec.status == Status.STOPPING:
            rec.status = Status.EXITED
        for cb in self.waiters.pop(rec.actor_id, []):
            cb()


def call_off(recs: list[ActorRecord]) -> list[ActorRecord]:
    """Cancels the restarts ``recs`` wait for (they are being stopped, or end with their parent)."""
    for r in recs:
        r.restart_due = None
    return recs

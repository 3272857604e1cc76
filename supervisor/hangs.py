"""Workers that stopped answering: a worker beats every 2 s when idle and says something at
every call's end, so one silent for much longer than its call may run is hung (or never
finished its start) and is killed; its supervisor then decides what comes next."""

from __future__ import annotations

from collections.abc import Iterator

from .registry import ActorRecord, Registry, Status

# A worker must say hello and finish init within this long, counted from its fork (its
# component is compiled before: loading it takes milliseconds).
STARTUP_TIMEOUT = 60.0
# A worker silent for its call timeout plus this long is called hung and killed; it sends
# a heartbeat every 2 s when idle, so this is several missed beats.
HANG_GRACE = 10.0


def overdue(registry: Registry, now: float) -> Iterator[tuple[ActorRecord, str]]:
    """The live workers silent for too long, each with the kill's reason (``start timeout``, ``hang``)."""
    for rec in list(registry):
        run = rec.run
        if not rec.alive or run.kill_reason:
            continue
        starting = rec.status in (Status.STARTING, Status.RESTARTING)
        limit = STARTUP_TIMEOUT if starting else rec.spec.limits.call_timeout + HANG_GRACE
        if now - run.last_seen > limit:
            yield rec, "start timeout" if starting else "hang"

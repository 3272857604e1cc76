"""The console's short memory of resource use: memory, CPU and events/s, per actor and in total.

Every ``SAMPLE_EVERY`` the hub takes one ``Sample`` from what the management API answers
(``list``: each actor's status and pid; ``chains``: each chain's length) and what psutil
reads of each worker (resident memory, CPU time), in the console's thread, never the loop's.
Rates are the change since the previous sample of the same process (CPU) or chain (events),
so nothing here depends on who else asks the server for ``top``. The ring keeps the last
``RING`` samples (five minutes) and is published as an immutable tuple, swapped whole: HTTP
threads read it while the hub adds to it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psutil

# Seconds between samples, and how many are kept: five minutes of charts.
SAMPLE_EVERY = 2.0
RING = 150


@dataclass(frozen=True, slots=True)
class Use:
    rss: int | None = None           # bytes, resident (None: no process to read)
    cpu: float | None = None         # percent of one core since the previous sample
    eps: float | None = None         # events stored per second since the previous sample

    def to_json(self) -> dict[str, Any]:
        return {"rss": self.rss, "cpu_percent": self.cpu, "events_per_second": self.eps}


@dataclass(frozen=True)
class Sample:
    t: float                                          # wall clock, seconds
    total: Use
    actors: dict[str, Use] = field(default_factory=dict)


def read_processes(pids: list[int]) -> dict[int, tuple[int, float]]:
    """pid -> (resident bytes, CPU seconds) of each process that can be read."""
    out = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                times = p.cpu_times()
                out[pid] = (p.memory_info().rss, times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue            # it ended since `list` answered
    return out


class Samples:
    def __init__(self, size: int = RING) -> None:
        self._ring: deque[Sample] = deque(maxlen=size)
        self.ring: tuple[Sample, ...] = ()          # what other threads read
        self._cpu: dict[str, tuple[int, float, float]] = {}      # actor -> (pid, cpu seconds, t)
        self._events: dict[str, tuple[int, float]] = {}          # actor -> (chain length, t)
        self.statuses: dict[str, str] = {}

    def add(self, t: float, rows: list[dict[str, Any]], lengths: dict[str, int],
            procs: dict[int, tuple[int, float]]) -> tuple[Sample, bool]:
        """One sample from ``list`` rows, chain lengths and process readings at time ``t``; and
        whether any actor came, went or changed status since the last one."""
        actors: dict[str, Use] = {}
        cpu_now: dict[str, tuple[int, float, float]] = {}
        events_now: dict[str, tuple[int, float]] = {}
        for row in rows:
            aid, pid = row["id"], row.get("pid")
            rss, cpu = None, None
            if pid in procs:
                rss, seconds = procs[pid]
                prev = self._cpu.get(aid)
                if prev is not None and prev[0] == pid and t > prev[2]:
                    cpu = round(max(0.0, 100 * (seconds - prev[1]) / (t - prev[2])), 1)
                cpu_now[aid] = (pid, seconds, t)
            eps = None
            if aid in lengths:
                before = self._events.get(aid)
                if before is not None and t > before[1]:
                    eps = round(max(0.0, (lengths[aid] - before[0]) / (t - before[1])), 1)
                events_now[aid] = (lengths[aid], t)
            actors[aid] = Use(rss, cpu, eps)
        self._cpu, self._events = cpu_now, events_now
        total = Use(_sum(u.rss for u in actors.values()),
                    _sum(u.cpu for u in actors.values()), _sum(u.eps for u in actors.values()))
        sample = Sample(t, total, actors)
        statuses = {row["id"]: str(row.get("status")) for row in rows}
        changed, self.statuses = statuses != self.statuses, statuses
        self._ring.append(sample)
        self.ring = tuple(self._ring)
        return sample, changed

    def latest(self, actor: str) -> Use | None:
        ring = self.ring
        return ring[-1].actors.get(actor) if ring else None

    def series(self, actor: str | None = None) -> list[dict[str, Any]]:
        """The ring as JSON points: the totals, or one actor's (samples without it left out)."""
        out = []
        for s in self.ring:
            use = s.total if actor is None else s.actors.get(actor)
            if use is not None:
                out.append({"t": s.t, **use.to_json()})
        return out


def _sum(values: Any) -> Any:
    known = [v for v in values if v is not None]
    return round(sum(known), 1) if known else None

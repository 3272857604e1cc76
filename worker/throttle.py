"""Token buckets for an actor's event rate: events per second and event bytes per second.

An actor that logs (or calls) faster than its limits is slowed down, not killed: the host
call that would exceed the limit waits for the bucket to refill. Each bucket holds one
second's worth, so bursts up to the limit pass untouched. Bytes are counted when events
are encoded (as their batch ships), so an actor over its byte rate waits on its next event. The waiting is recorded (see
``Actor.record``), so the chain says when and how much an actor was throttled.
"""

from __future__ import annotations

from theater.bucket import Bucket


class Throttle:
    def __init__(self, events_per_second: float, bytes_per_second: float, now: float) -> None:
        self.events = Bucket(events_per_second, now)
        self.bytes = Bucket(bytes_per_second, now)
        self.delayed = 0           # events that had to wait since the last report
        self.waited = 0.0          # seconds spent waiting since the last report
        self.reported_at = float("-inf")       # the first delay is reported at once

    def wait(self, now: float) -> float:
        """Takes one event; returns how long to wait (0 = go ahead): for the event, or for bytes owed."""
        delay = max(self.events.take(1, now), self.bytes.take(0, now))
        if delay > 0:
            self.delayed += 1
            self.waited += delay
        return delay

    def spent(self, size: int, now: float) -> None:
        """Counts bytes of events just encoded (they are on their way already; later events wait)."""
        self.bytes.take(size, now)

    def report(self, now: float, every: float = 1.0) -> dict[str, float] | None:
        """What to record, at most once per ``every`` seconds while throttling goes on."""
        if not self.delayed or now - self.reported_at < every:
            return None
        out = {"events_per_second": self.events.rate, "bytes_per_second": self.bytes.rate,
               "delayed_events": self.delayed, "waited_ms": round(self.waited * 1000, 3)}
        self.delayed, self.waited, self.reported_at = 0, 0.0, now
        return out

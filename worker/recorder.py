"""Everything an actor does becomes an event: recorded here, throttled here, shipped by the chain link.

An actor over its event rate (``[limits] events_per_second``, ``event_bytes_per_second``)
is slowed down, not failed: the host call that would exceed the rate waits, serving the
sockets meanwhile, and the waiting is recorded (``limit/throttled``, at most once a second
and once more at the end). So does one that would record more while ``chainlink.MAX_UNACKED``
events wait for the chain (``Loop.wait_for_chain``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .chainlink import ChainLink
from .throttle import Throttle

log = logging.getLogger("theater.worker")

Pump = Callable[[float], None]      # serve the sockets for up to this many seconds


class Recorder:
    def __init__(self, chain: ChainLink, throttle: Throttle, pump: Pump,
                 catch_up: Callable[[], None] = lambda: None) -> None:
        self.chain = chain
        self.throttle = throttle
        self._pump = pump
        self._catch_up = catch_up           # waits while too many events wait for the chain
        # Runs before every event: records what happened since the last one without a call of
        # its own (a WASI component's output, see worker.wasi.Output).
        self.before: Callable[[], None] | None = None

    def record(self, event_type: str, value: Any, state_changed: bool = False) -> None:
        """Adds an event to this actor's chain, waiting first if the actor is over its event rate."""
        if self.before is not None:
            self.before()
        delay = self.throttle.wait(time.monotonic())
        if delay > 0:
            self._slow_down(delay)
        if self.chain.backed_up:
            self._catch_up()
        self.chain.emit(event_type, value, state_changed)

    def _slow_down(self, delay: float) -> None:
        now = time.monotonic()
        report = self.throttle.report(now)
        if report is not None:
            self.chain.emit("limit/throttled", report)
        deadline = now + delay
        while (left := deadline - time.monotonic()) > 0:
            self._pump(left)

    def final_report(self) -> None:
        """The throttling not yet reported, as the actor ends."""
        report = self.throttle.report(time.monotonic(), every=0)
        if report is not None:
            self.chain.emit("limit/throttled", report)

    def settle(self, timeout: float) -> bool:
        """Waits until the chain holds every event (or the time is up); whether it does."""
        deadline = time.monotonic() + timeout
        self.chain.sync(ack=True)
        while not self.chain.settled and time.monotonic() < deadline:
            self._pump(min(0.1, max(0.0, deadline - time.monotonic())))
        if not self.chain.settled:
            log.warning("%d events not acknowledged by the chain", self.chain.backlog)
        return self.chain.settled

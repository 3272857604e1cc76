"""``theater:simple/timing``: the clock and waiting, within the grant's bounds.

``now`` is milliseconds since the UNIX epoch; ``sleep`` and ``deadline`` wait while the
worker keeps serving its sockets (so a sleeping actor still answers the server, acknowledges
its events and can be stopped), and never past the running call's deadline: a wait that
would outlast it is refused up front rather than cut short by the call timeout. A wait
outside ``min_sleep_duration`` .. ``max_sleep_duration`` (v0.2 defaults: 1 ms .. 1 h) is
refused and recorded as ``timing/permission-denied``. Every call is recorded, so a replay
sees the same times and never waits.
"""

from __future__ import annotations

import time

from theater.errors import TheaterError
from theater.grants import SPECS

from ..values import Err, Ok
from .base import Functions, Handler, register

INTERFACE = "theater:simple/timing"
SPEC = SPECS["timing"]


@register
class Timing(Handler):
    type = "timing"

    def functions(self) -> Functions:
        return {INTERFACE: {"now": lambda: time.time_ns() // 1_000_000, "sleep": self._sleep,
                            "deadline": self._deadline}}

    def _sleep(self, duration: int) -> Ok | Err:
        return self._wait("sleep", {"duration": duration}, duration / 1000)

    def _deadline(self, timestamp: int) -> Ok | Err:
        seconds = timestamp / 1000 - time.time()
        if seconds <= 0:
            return Ok()                 # already passed: no wait, nothing to bound
        return self._wait("deadline", {"timestamp": timestamp}, seconds)

    def _wait(self, function: str, asked: dict[str, int], seconds: float) -> Ok | Err:
        low = SPEC.value(self.config, "min_sleep_duration")
        high = SPEC.value(self.config, "max_sleep_duration")
        if not low <= seconds <= high:
            reason = f"a wait of {seconds * 1000:.0f} ms is outside the grant ({low * 1000:g} ms to {high * 1000:g} ms)"
            self.host.record("timing/permission-denied", {"function": function, **asked, "reason": reason})
            return Err(reason)
        deadline = self.host.call_deadline()
        if deadline is not None and time.monotonic() + seconds > deadline:
            left = max(0.0, deadline - time.monotonic())
            return Err(f"a wait of {seconds * 1000:.0f} ms would outlast the call's time limit "
                       f"({left * 1000:.0f} ms left for waits; the rest is kept for the actor to answer)")
        try:
            self.host.wait(seconds)
        except TheaterError as e:       # asked to stop while waiting: the call should end
            return Err(e.message)
        return Ok()

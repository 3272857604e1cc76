"""Wall-clock deadlines for wasm calls, and SIGTERM turned into a prompt, graceful stop.

wasmtime checks the engine's epoch at loop back-edges and function entries; each call
sets its store's deadline one tick ahead, and this thread ticks the epoch when the call's
time is up, so even ``(loop br 0)`` is interrupted. The thread sleeps in ``select`` and
wakes only when a call is armed, a deadline passes or a signal arrives: an idle actor
costs no wake-ups.

Python runs signal handlers only between bytecodes of the main thread, which is inside
wasm during a call. So signals are routed through ``signal.set_wakeup_fd`` to this
thread, which can shorten the running call's deadline to ``STOP_GRACE`` and wake the
main loop through ``wake_fd``.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time

import wasmtime

# How long a running call may go on after a stop was asked for (SIGTERM): long enough
# for any well-behaved call, short enough that the server's shutdown timeout is rarely
# reached.
STOP_GRACE = 1.0


class Watchdog:
    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self.deadline: float | None = None
        self.reason: str | None = None          # why the last interrupt happened
        self.stop_requested = False
        self._idle = True
        self._arm_r, self._arm_w = os.pipe()
        self._sig_r, self._sig_w = os.pipe()
        self.wake_fd, self._wake_w = os.pipe()
        for fd in (self._sig_r, self._sig_w, self.wake_fd, self._wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda *_: None)   # handled by the thread, via the wakeup fd
        signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C in the server's terminal is the server's
        threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def arm(self, seconds: float) -> None:
        self.reason = None
        self.deadline = time.monotonic() + (min(seconds, STOP_GRACE) if self.stop_requested else seconds)
        # Wake the thread only if it sleeps with no deadline; one already in a timed sleep
        # rechecks when that ends. So a busy actor costs a wake-up per call timeout, not per call.
        if self._idle:
            os.write(self._arm_w, b"a")

    def disarm(self) -> None:
        self.deadline = None

    def interrupt(self, reason: str) -> None:
        """Traps the running call at its next epoch check."""
        self.reason = reason
        self.engine.increment_epoch()

    def drain_wake(self) -> None:
        try:
            while os.read(self.wake_fd, 64):
                pass
        except BlockingIOError:
            pass

    def _run(self) -> None:
        while True:
            self._idle = True           # before reading the deadline: see arm()
            deadline = self.deadline
            if deadline is not None:
                self._idle = False
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._arm_r, self._sig_r], [], [], timeout)
            if self._arm_r in ready:
                os.read(self._arm_r, 4096)
            if self._sig_r in ready:
                signums = _drain(self._sig_r)
                if signal.SIGTERM in signums:
                    self.stop_requested = True
                    if self.deadline is not None:
                        self.deadline = min(self.deadline, time.monotonic() + STOP_GRACE)
                    os.write(self._wake_w, b"s")
            deadline = self.deadline
            if deadline is not None and time.monotonic() >= deadline:
                self.deadline = None
                self.interrupt("stopping" if self.stop_requested else "timeout")


def _drain(fd: int) -> set[int]:
    got: set[int] = set()
    try:
        while chunk := os.read(fd, 64):
            got.update(chunk)
    except BlockingIOError:
        pass
    return got

"""Wall-clock deadlines for wasm calls, events shipped during long calls, and SIGTERM
turned into a prompt, graceful stop.

wasmtime checks the engine's epoch at loop back-edges and function entries. Each call
sets its store's deadline one tick ahead, and this thread ticks the epoch while a call
runs: once every ``TICK`` and when the call's time is up. A tick runs ``_on_epoch`` on the
main thread, inside wasm: it ships the actor's pending events (so a call the kernel kills
after running a while still leaves its record), then either lets the call go on or, past
its deadline, traps it, so even ``(loop br 0)`` is interrupted. The deadline is checked by
the clock in the callback, so a tick that arrives late, or in the next call, never traps a
call that has time left. The thread sleeps in ``select`` and wakes only while calls run:
an idle actor costs no wake-ups. A busy one costs one every ``TICK``, not one per call: after
a call the thread goes on ticking for ``WARM`` before it sleeps for good, so calls that follow
closely need not wake it (a wake-up per call, and the GIL handed to and fro with it, cost a
busy receiver more than its calls did). An actor called less often than that is woken per
call, as before: never more than twice as often as one ticking all the time.

Python runs signal handlers only between bytecodes of the main thread, which is inside
wasm during a call. So signals are routed through ``signal.set_wakeup_fd`` to this
thread, which shortens the running call's deadline to ``STOP_GRACE`` and wakes the main
loop through ``wake_fd``.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import select
import signal
import threading
import time
from collections.abc import Callable

import wasmtime
from wasmtime import _ffi as ffi

log = logging.getLogger("theater.worker")

# How long a running call may go on after a stop was asked for (SIGTERM): long enough
# for any well-behaved call, short enough that the server's shutdown timeout is rarely
# reached.
STOP_GRACE = 1.0
# How often a running call is interrupted to ship the events recorded before and during
# it: the same bound as the chain link's flush interval.
TICK = 0.005
# How long the thread keeps ticking after a call began before it sleeps until the next one.
WARM = 2 * TICK

_Callback = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.POINTER(ffi.wasmtime_context_t), ctypes.c_void_p,
                             ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t))
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
_CONTINUE = 0                   # WASMTIME_UPDATE_DEADLINE_CONTINUE


class Watchdog:
    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self.deadline: float | None = None
        self.reason: str | None = None          # why the running call was trapped, if it was
        self.stop_requested = False
        self.on_tick: Callable[[], None] = lambda: None
        self._started: float | None = None      # when the running call began
        self._armed_at = -math.inf              # when the last call began
        self._wake_at = math.inf                # when the thread's sleep ends
        self._callback = _Callback(self._on_epoch)   # kept alive as long as the store
        self._arm_r, self._arm_w = os.pipe()
        self._sig_r, self._sig_w = os.pipe()
        self.wake_fd, self._wake_w = os.pipe()
        for fd in (self._sig_r, self._sig_w, self.wake_fd, self._wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._sig_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda *_: None)   # handled by the thread, via the wakeup fd
        signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C in the server's terminal is the server's
        threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def watch(self, store: wasmtime.Store, on_tick: Callable[[], None]) -> None:
        """Takes over ``store``'s epoch deadlines; ``on_tick`` runs at every tick inside a call."""
        self.on_tick = on_tick
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), self._callback, None, _NO_FINALIZER)

    def arm(self, seconds: float) -> None:
        self.reason = None
        now = time.monotonic()
        self.deadline = now + (min(seconds, STOP_GRACE) if self.stop_requested else seconds)
        self._started = self._armed_at = now
        # Wake the thread only if it would sleep past this call's deadline; otherwise it sees
        # the call when its sleep ends. So a busy actor costs at most one wake-up per TICK.
        if self.deadline < self._wake_at:
            os.write(self._arm_w, b"a")

    def disarm(self) -> None:
        self._started = None
        self.deadline = None

    def drain_wake(self) -> None:
        _drain(self.wake_fd)

    def _on_epoch(self, _ctx: object, _data: object, delta: ctypes._Pointer, kind: ctypes._Pointer) -> int:
        """Main thread, inside wasm: trap the call if its time is up, else ship events and go on."""
        delta[0], kind[0] = 1, _CONTINUE
        deadline = self.deadline
        if deadline is not None and time.monotonic() >= deadline:
            self.reason = "stopping" if self.stop_requested else "timeout"
            return ctypes.cast(ffi.wasmtime_error_new(b"theater: call interrupted"), ctypes.c_void_p).value or 0
        try:
            self.on_tick()
        except Exception:                       # never let an exception unwind through wasm
            log.exception("shipping events during a call failed")
        return 0

    def _run(self) -> None:
        while True:
            self._wake_at = math.inf    # before reading the deadline: see arm()
            deadline, started = self.deadline, self._started
            now = time.monotonic()
            if deadline is not None and started is not None:
                wake = min(deadline, started + TICK * (1 + int(max(0.0, now - started) / TICK)))
            elif now - self._armed_at < WARM:
                wake = now + TICK
            else:
                wake = math.inf
            self._wake_at = wake
            timeout = None if wake == math.inf else max(0.0, wake - now)
            ready, _, _ = select.select([self._arm_r, self._sig_r], [], [], timeout)
            if self._arm_r in ready:
                os.read(self._arm_r, 4096)
            if self._sig_r in ready and signal.SIGTERM in _drain(self._sig_r):
                self.stop_requested = True
                if self.deadline is not None:
                    self.deadline = min(self.deadline, time.monotonic() + STOP_GRACE)
                os.write(self._wake_w, b"s")
            started = self._started
            if started is not None and time.monotonic() - started >= TICK:
                self.engine.increment_epoch()


def _drain(fd: int) -> set[int]:
    got: set[int] = set()
    try:
        while chunk := os.read(fd, 64):
            got.update(chunk)
    except BlockingIOError:
        pass
    return got

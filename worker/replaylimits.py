"""The limits a replay holds each incarnation to: those its record says the live actor had.

A live actor's linear memory is held to its ``[limits] memory`` by wasmtime's store limits,
and its whole worker process to ``process_memory`` (a cgroup, else ``RLIMIT_DATA``). A
replay runs a component from a chain, perhaps one someone else handed over (a hostile record
and component), in the replayer's process: without the same limits, a component that grows
its memory took the host's. Each ``lifecycle/start`` records the two (``records.held_limits``);
a record that does not say (written before they were) gets the home's defaults.

The replayer's process holds more than a worker (the whole chain, the compiled components),
so an incarnation's data may grow by ``process_memory`` beyond what the replayer holds once its
component is loaded: never less room than the live worker had, whose limit counts its
interpreter too. Loading a compiled component is held to ``[compile] memory`` beyond what it
held before (compiling one, by the compile process's own limit: ``replaycompile``). A
record is data, and may be forged: what it claims is held to half of the memory the machine
has free when the replay begins, so no record takes the host's.

The limit is ``RLIMIT_DATA``'s soft value (the replayer raises it again between loading and
running; the component, being wasm, makes no system call to do the same). A grow it refuses
is not seen as it happens (see ``memories``): a replay that fails, or whose Python gets a
``MemoryError``, while a memory is full or the data at its limit, stopped at that limit.

Time: each call (and instantiation) is stopped by an ``Alarm``, one thread for the whole
replay, so no call needs a new thread's stack at the memory limit.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from theater import _linux
from theater._units import human_size
from theater.manifest import MAX_WASM_MEMORY, Limits

from . import memories

# A memory or the process's data this close to its limit is at it (as memories.full says).
SLACK_MIN = memories.SLACK_MIN
LEAST = 64 << 10                # one wasm page: no limit is lower (as a manifest's)
ENOMEM = "(os error 12)"        # how wasmtime says the data rlimit refused it memory


@dataclass(frozen=True)
class Held:
    """One incarnation's limits, and where they came from (for messages)."""

    memory: int
    process_memory: int
    source: str
    fuel: int = 0                   # each call's (and the instantiation's); 0: none


def of_record(info: dict[str, Any], defaults: Limits, ceiling: int) -> Held:
    """The limits a ``lifecycle/start``'s data ``info`` records, else ``defaults``; ValueError
    names a value that is no such limit. ``process_memory`` at most ``ceiling``."""
    said = info.get("limits")
    if said is None:
        # (no fuel: a record that does not say is older than fuel's replay, which ran without it)
        memory, process, source = defaults.memory, defaults.process_memory, "the defaults: the record does not say"
        fuel = 0
    else:
        if not isinstance(said, dict) or set(said) != {"fuel", "memory", "process_memory"}:
            raise ValueError(f"the record's limits are {said!r}: expected fuel, memory and process_memory")
        memory, process, fuel, source = said["memory"], said["process_memory"], said["fuel"], "the record's"
        if isinstance(fuel, bool) or not isinstance(fuel, int) or not 0 <= fuel < 1 << 63:
            raise ValueError(f"the record's limits say fuel = {fuel!r}: expected a count from 0 to {(1 << 63) - 1}")
        for name, value, most in (("memory", memory, MAX_WASM_MEMORY), ("process_memory", process, None)):
            if isinstance(value, bool) or not isinstance(value, int) or value < LEAST or \
                    (most is not None and value > most):
                raise ValueError(f"the record's limits say {name} = {value!r}: expected a byte count from "
                                 f"{LEAST}{f' to {most}' if most else ''}")
    if process > ceiling:
        process, source = ceiling, (f"{source}, {human_size(process)} held to half the memory this machine "
                                    f"had free ({human_size(ceiling)})")
    return Held(memory, process, source, fuel)


class ProcessData:
    """This process's data rlimit, each allowance counted from what it held when it was set."""

    def __init__(self) -> None:
        self.base = 0
        self.ceiling = _linux.memory_available() // 2
        self.allowed: int | None = None       # none yet
        self.kind, self.what = "", ""

    def allow(self, extra: int, kind: str, what: str) -> None:
        """From now on, the data may grow by ``extra`` beyond what it is now (``kind``: the
        report's name of that limit, ``what``: the words for it). Said on stderr too: wasmtime
        aborts the process when it gets no memory, and the CLI then names the last limit set."""
        self.base, self.allowed, self.kind, self.what = _linux.data_size(), extra, kind, what
        print(f"held to {self.says(reached=False)}", file=sys.stderr, flush=True)
        _linux.set_data_limit(self.base + extra)

    def release(self) -> None:
        """No limit on this process any more: what is left (finding which limit stopped the
        replay, the report) is the replayer's own, and needs memory. ``at_limit`` still says
        whether the data had reached the last."""
        _linux.set_data_limit(resource.RLIM_INFINITY)

    def at_limit(self) -> bool:
        allowed = self.allowed
        return allowed is not None and _linux.data_size() + max(SLACK_MIN, allowed // 16) > self.base + allowed

    def says(self, reached: bool = True) -> str:
        limit = f"its {self.what}: {self.allowed} bytes more than the replayer held as it set it"
        return f"the replay reached {limit}" if reached else limit


def reached(held: Held | None, data: ProcessData) -> tuple[str, str] | None:
    """Which limit the replay of an incarnation held to ``held`` is at, and what it says, if it is at one."""
    if held is None:
        return None
    full = memories.full(held.memory)
    if full is not None:
        return "memory", (f"the replay reached the component's linear memory limit ({full} of its {held.memory} "
                          f"bytes; {held.source})")
    if data.at_limit():
        return data.kind, data.says()
    return None


class Alarm:
    """Runs ``ring`` once ``seconds`` have passed, unless disarmed first: one thread for the
    whole replay, started before any limit (a thread a call started could find no room for its
    stack at the process memory limit)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: float | None = None
        self._ring: Callable[[], None] = lambda: None
        threading.Thread(target=self._run, name="replay-alarm", daemon=True).start()

    def arm(self, seconds: float, ring: Callable[[], None]) -> None:
        with self._cond:
            self._due, self._ring = time.monotonic() + seconds, ring
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._due = None

    def _run(self) -> None:
        with self._cond:
            while True:
                left = None if self._due is None else self._due - time.monotonic()
                if left is not None and left <= 0:
                    self._due = None
                    self._ring()
                else:
                    self._cond.wait(left)

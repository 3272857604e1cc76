"""Calls into the actor: one export at a time, the state threaded through, every call recorded.

Host-owned state goes in as the first parameter of every export and comes back first in its
result. Each call is recorded before it runs (``wasm`` call event, which leaves within a
watchdog tick: a worker the kernel kills mid-call still leaves a record of what it was
doing) and after (its result, with the new state when it changed). A trap, an ``Err``, or a
limit (``timeout``, ``fuel``, ``memory`` for linear memory, ``oom`` for the process) is
recorded and raised as a ``Failure``: the instance is dead after a trap, so the actor ends
and its supervisor decides what comes next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import component as wc

from theater.errors import Failure, TheaterError
from theater.manifest import Limits

from . import memories, records
from .component import Shape
from .crossing import Export
from .watchdog import Watchdog

Record = Callable[..., None]         # (event type, value, state_changed=False) -> None

# What a call waits for (a reply, room at a peer, a sleep, a program) is given up this much
# before the call's time limit (a tenth of it at most), so the actor hears why, in an Err, and
# can still answer: a hung peer or a slow server does not take its callers down with it.
WAIT_MARGIN = 1.0


class Calls:
    def __init__(self, store: wasmtime.Store, instance: wc.Instance, watchdog: Watchdog, limits: Limits,
                 record: Record, seal: Callable[[], None], shape: Shape, state: bytes | None) -> None:
        self.store = store
        self.instance = instance
        self.watchdog = watchdog
        self.limits = limits
        self.record = record
        self.seal = seal                         # what a call sent leaves once its end is durable
        self.state = state
        self.count = 0
        self.deadline: float | None = None       # when the running call's waits give up (WAIT_MARGIN)
        self._shape = shape
        self._names = shape.export_names         # interface base name -> exact export name
        self._present = {base: set(shape.exports[name]) for base, name in shape.export_names.items()}
        self._funcs: dict[tuple[str, str], Export] = {}

    def exports(self, interface: str, fn: str) -> bool:
        return fn in self._present.get(interface, ())

    def _func(self, interface: str, fn: str) -> Export:
        f = self._funcs.get((interface, fn))
        if f is None:
            f = self._funcs[(interface, fn)] = Export.of(self.instance, self.store, self._names[interface], fn,
                                                         self._shape.signature(interface, fn))
        return f

    def call(self, interface: str, fn: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """Runs one export with the current state; returns what it returned after the state."""
        name = f"{interface}.{fn}"
        self.record("wasm", records.call_event(name, params))
        limits = self.limits
        if limits.fuel:
            self.store.set_fuel(limits.fuel)
        self.store.set_epoch_deadline(1)
        self.deadline = time.monotonic() + limits.call_timeout - min(WAIT_MARGIN, limits.call_timeout / 10)
        self.watchdog.arm(limits.call_timeout)
        self.count += 1
        try:
            result = self._func(interface, fn)(self.state, params)
        except wasmtime.WasmtimeError as e:
            raise self._failed(name, *self._classify(e)) from None
        except TheaterError as e:            # a host function gave up (e.g. stopping)
            raise self._failed(name, "host", e.message) from None
        except MemoryError:                  # the worker process is over its memory rlimit
            raise self._failed(name, "oom", f"the worker ran out of process memory (its process_memory limit "
                                            f"is {self.limits.process_memory} bytes)") from None
        except Exception as e:               # a host function broke: the actor traps
            raise self._failed(name, "host", f"{type(e).__name__}: {e}") from None
        finally:
            self.watchdog.disarm()
            self.deadline = None
        tag, payload = result
        if tag == "err":
            raise self._failed(name, "error", payload)
        new_state, returns = records.split_result(payload)
        event, changed = records.result_event(name, returns, self.state, new_state)
        self.record("wasm", event, state_changed=changed)
        self.seal()
        self.state = new_state
        return returns

    def _classify(self, e: wasmtime.WasmtimeError) -> tuple[str, str]:
        reason = self.watchdog.reason
        if reason == "timeout":
            return "timeout", f"call exceeded its time limit ({self.limits.call_timeout:g}s)"
        if reason is not None:
            return "stopped", "interrupted: the actor was asked to stop"
        if records.fuel_ran_out(e):
            return "fuel", records.out_of_fuel(self.limits.fuel)
        full = memories.full(self.limits.memory)
        if full is not None:                 # an allocator giving up after a refused memory.grow
            return "memory", (f"trapped with its linear memory full ({full} of its {self.limits.memory} bytes, "
                              f"the memory limit): {records.trap_message(e)}")
        return "trap", records.trap_message(e)

    def _failed(self, function: str, reason: str, message: str) -> Failure:
        self.record("wasm", records.error_event(function, reason, message))
        self.seal()
        return Failure(reason, message)

"""WASI 0.2 for components, with no ambient authority and every outside value recorded.

A component that imports ``wasi:*`` needs no handler. Its imports are served by wasmtime's
own WASI (``add_wasip2``) with a default ``WasiConfig``: no arguments, no environment, no
preopened directory (so ``wasi:filesystem`` reaches no file: an actor's files go through the
recorded ``filesystem`` handler), empty stdin, and no network (measured with wasmtime 50:
its default config refuses to create a socket, ``access-denied``, and to look up a name,
``permanent-resolver-failure``; tests/test_wasi.py checks it stays so). Over that, what
carries values from outside is shadowed by recorded Python functions, each event typed
``<interface>/<function>`` like a handler's:
  wasi:clocks/wall-clock, monotonic-clock   now, resolution (``subscribe-*`` stay wasmtime's:
                                            they only wait, and hand out no value)
  wasi:random/random, insecure, insecure-seed
  wasi:cli/environment                      the variables the ``environment`` grant lets
                                            through (none without one), ``allow_list_all``
                                            or not: it is a WASI program's only way to read
                                            one; arguments = [actor name], no initial cwd
  wasi:sockets/{tcp,udp}-create-socket      always ``access-denied``, recorded: no socket
                                            exists at all, whatever wasmtime's config says
So a replay answers all of them from the record, like any host call (``worker/replay.py``).

Shadowing only works at the version ``add_wasip2`` registers (``WASIP2``) or the guest's
exact one; at ``WASIP2`` it covers every 0.2.x guest (tests/test_guests.py measures this).
A WASI component in a store without ``set_wasi`` aborts the process: whoever links WASI
here gets the ``Output`` whose ``attach`` gives the store its config.

stdout and stderr become events (``wasi:cli/stdout/write``, ``wasi:cli/stderr/write``,
throttled like every event). wasmtime calls the output callback on one of its own (tokio)
threads while the guest waits in ``blocking-write-and-flush``, so the callback only queues
the bytes; the main thread records them before the next event (``Output.drain``), which
keeps them in order with the calls around them, live and in a replay.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import component as wc

from theater.errors import TheaterError

from .crossing import add_host_func
from .handlers import Provide
from .handlers.base import Functions, Handler
from .values import Err
from .wit import imports_wasi

WASIP2 = "0.2.12"
# Random bytes one call may ask for: the values are recorded, and WASI's call cannot fail.
MAX_RANDOM = 1 << 20
# Output queued between two events; beyond it, writes are dropped (and counted in limit/output).
MAX_PENDING = 4 << 20
STREAMS = ("stdout", "stderr")


def _datetime(seconds: float) -> dict[str, int]:
    ns = round(seconds * 1e9)
    return {"seconds": ns // 1_000_000_000, "nanoseconds": ns % 1_000_000_000}


def _random_bytes(n: int) -> bytes:
    if n > MAX_RANDOM:
        raise TheaterError(f"get-random-bytes asked for {n} bytes; at most {MAX_RANDOM} are handed out at once")
    return os.urandom(n)


def _u64() -> int:
    return int.from_bytes(os.urandom(8), "little")


def _no_socket(_family: str) -> Err:
    return Err("access-denied")


# The shadowed functions that need nothing from the actor.
_FIXED: dict[str, dict[str, Callable[..., Any]]] = {
    "wasi:clocks/wall-clock": {
        "now": lambda: _datetime(time.time()),
        "resolution": lambda: _datetime(time.clock_getres(time.CLOCK_REALTIME))},
    "wasi:clocks/monotonic-clock": {
        "now": time.monotonic_ns,
        "resolution": lambda: round(time.clock_getres(time.CLOCK_MONOTONIC) * 1e9)},
    "wasi:random/random": {"get-random-bytes": _random_bytes, "get-random-u64": _u64},
    "wasi:random/insecure": {"get-insecure-random-bytes": _random_bytes, "get-insecure-random-u64": _u64},
    "wasi:random/insecure-seed": {"insecure-seed": lambda: (_u64(), _u64())},
    "wasi:sockets/tcp-create-socket": {"create-tcp-socket": _no_socket},
    "wasi:sockets/udp-create-socket": {"create-udp-socket": _no_socket},
}
ENVIRONMENT = "wasi:cli/environment"
SHADOWED: dict[str, frozenset[str]] = {
    **{iface: frozenset(fns) for iface, fns in _FIXED.items()},
    ENVIRONMENT: frozenset({"get-environment", "get-arguments", "initial-cwd"}),
}


class Wasi(Handler):
    """The shadowed WASI functions, live (recorded like a handler's). Not granted by a manifest:
    an actor has it when its component imports WASI."""

    type = "wasi"

    def functions(self) -> Functions:
        env = sorted(self.host.environ.items())
        name = self.host.name
        return {**_FIXED, ENVIRONMENT: {"get-environment": lambda: env, "get-arguments": lambda: [name],
                                        "initial-cwd": lambda: None}}


def link(linker: wc.Linker, engine: wasmtime.Engine, component: wc.Component, imports: dict[str, str],
         provide: Provide) -> Output | None:
    """Adds wasmtime's WASI and, over it, ``provide``'s function for each shadowed one the
    component imports; the component's stdout/stderr (None if it imports no WASI)."""
    if not imports_wasi(imports):
        return None
    linker.add_wasip2()
    linker.allow_shadowing = True
    types = component.type.imports(engine)
    with linker.root() as root:
        for base, exact in imports.items():
            shadowed = SHADOWED.get(base)
            if not shadowed:
                continue
            with root.add_instance(f"{base}@{WASIP2}") as instance:
                for fn, ext in types[exact].ty.exports(engine).items():
                    if fn in shadowed and isinstance(ext.ty, wc.FuncType):
                        add_host_func(instance, fn, ext.ty, provide(base, fn))
    return Output()


def output_event(data: bytes) -> dict[str, Any]:
    return {"input": [data], "output": None}


class Output:
    """The component's stdout and stderr, queued by wasmtime's thread, recorded by ours."""

    def __init__(self) -> None:
        self.pending: deque[tuple[str, bytes]] = deque()
        self.queued = 0
        self.dropped = dict.fromkeys(STREAMS, 0)
        self._draining = False

    def attach(self, store: wasmtime.Store) -> None:
        """Gives ``store`` its WASI context (before anything is instantiated in it)."""
        config = wasmtime.WasiConfig()
        config.stdout_custom = lambda data: self._write("stdout", data)
        config.stderr_custom = lambda data: self._write("stderr", data)
        store.set_wasi(config)

    def _write(self, stream: str, data: bytes) -> None:      # on a wasmtime thread: only queue
        if self.queued + len(data) > MAX_PENDING:
            self.dropped[stream] += len(data)
            return
        self.queued += len(data)
        self.pending.append((stream, bytes(data)))

    def drain(self, record: Callable[[str, Any], None]) -> None:
        """Records what was written since the last event (call before recording any event;
        ``record`` may call it again: that inner call does nothing, so the order holds)."""
        if self._draining:
            return
        self._draining = True
        try:
            self._drain(record)
        finally:
            self._draining = False

    def take(self) -> tuple[str, bytes] | None:
        """The oldest write not yet recorded: (stream, bytes)."""
        if not self.pending:
            return None
        stream, data = self.pending.popleft()
        self.queued -= len(data)
        return stream, data

    def _drain(self, record: Callable[[str, Any], None]) -> None:
        while (write := self.take()) is not None:
            record(f"wasi:cli/{write[0]}/write", output_event(write[1]))
        for stream, n in self.dropped.items():
            if n:
                self.dropped[stream] = 0
                record("limit/output", {"stream": stream, "dropped_bytes": n, "limit": MAX_PENDING})

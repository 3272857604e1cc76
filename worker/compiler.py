"""``python -m worker compile``: one component compiled into the cache, in a process of its own.

The server starts this for a component that has no compiled form yet, before it forks the
worker that will load it. So compiling is charged to no actor (Cranelift needs ~400 MiB and
~20 s of CPU for an 18 MB componentize-py component, where an actor's default process memory
is 256 MiB), and it never happens in the fork server (a fork after compiling deadlocks
wasmtime's thread pool) or in the server. Its ceiling is ``[compile] memory``: the server puts
it in a cgroup of its own with that limit before it writes "go" on its stdin; without cgroups
this process lowers its own RLIMIT_DATA (``--data-limit``). The server kills it after
``[compile] timeout``. Under ``--user`` it drops to the workers' user before it reads the
component, and writes only to the two descriptors the server gave it (``--out``), of files the
server then moves into the cache (supervisor/compiled.py).

The replayer (``theater replay``) starts it too, for a component the cache lacks, before it
confines itself (worker/replaycompile.py): with ``--data-limit`` (it has no cgroup), and
``--file``, the component's path (the home's copy, or ``theater replay --component``'s), and
``--digest``, the SHA-256 the replayer found it to have. Either way the bytes it reads must have
that digest (the server's: the name they are stored under), or it refuses them as invalid.

It prints one JSON line: ``{"ok": true, "seconds", "peak", "bytes"}`` (exit 0) or
``{"ok": false, "error"}`` for a component that is not valid or does not check (exit 2). Out of
memory it exits 3 (Python's MemoryError), or Rust's allocator aborts it (SIGABRT, saying
"memory allocation of N bytes failed"), or the kernel kills it (cgroup).
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from pathlib import Path

import orjson

from theater import _linux
from theater.compiling import EXIT_INVALID, EXIT_MEMORY
from theater.errors import ComponentError

from .component import compiled_bytes, make_engine
from .wit import signatures


def run(wasm: Path, digest: str, fuel: bool, data_limit: int, user: tuple[int, int] | None,
        out: tuple[int, int]) -> int:
    """Compiles ``wasm``, writing the compiled form and its shape to ``out`` (descriptors of files
    the server or the replayer made: under --user the cache is not ours to write, see
    supervisor/compiled.py)."""
    _linux.die_with_parent(signal.SIGKILL)       # a compile nobody waits for is not worth finishing
    if data_limit:
        _linux.lower_limit(resource.RLIMIT_DATA, data_limit)
    try:
        return _compile(wasm, digest, fuel, user, out)
    except MemoryError:                           # anywhere past the limit: reading the WIT package too
        os.write(2, b"compile: out of memory (MemoryError)\n")
        return EXIT_MEMORY


def _compile(wasm: Path, digest: str, fuel: bool, user: tuple[int, int] | None, out: tuple[int, int]) -> int:
    _linux.harden(nofile=256)                     # it reads untrusted input: no core dumps, no privileges
    # everything that may import or read this Python's files is done first (as the zygote does):
    # the workers' user may not be able to read them
    engine = make_engine(fuel)
    signatures()
    if not sys.stdin.readline():                  # "go": we are in our cgroup (or the server is gone)
        return 1
    if user is not None:                          # the workers' user (--user), as the workers drop to it
        _linux.become(*user)                      # (which keeps our parent-death signal)
    started = time.monotonic()
    try:
        for fd, data in zip(out, compiled_bytes(engine, wasm, digest), strict=True):
            with open(fd, "wb") as f:
                f.write(data)
    except ComponentError as e:
        _say({"ok": False, "error": e.message})
        return EXIT_INVALID
    _say({"ok": True, "seconds": round(time.monotonic() - started, 3), "bytes": wasm.stat().st_size,
          "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})
    return 0


def _say(result: dict[str, object]) -> None:
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    sys.stdout.flush()

"""Whether a trap was the linear-memory limit: the size of the actor's memories, from the kernel.

A guest whose ``memory.grow`` is refused sees -1; its allocator then usually gives up with a
trap (``unreachable`` in Rust, C and CPython). To name that stop ``memory`` rather than
``trap``, the worker needs to know a grow was refused. wasmtime's Rust API has a hook for
that (a ``ResourceLimiter``), but wasmtime-py 50's C API only takes fixed limits
(``wasmtime_store_limiter``), and its one callback on growth, a host memory creator, would
replace wasmtime's own memories and with them the copy-on-write images that keep an idle
actor's unique memory small. So the worker looks at the memories when a call traps: a
memory that could not grow by another ``SLACK`` without passing the limit is full, and the
trap is taken as the allocator's reaction to that.

The sizes come from ``/proc/self/maps``. wasmtime reserves each 32-bit linear memory as one
mapping (4 GiB, plus guard regions before and after, all inaccessible) and makes its first
``size`` bytes readable and writable as it grows: an accessible run that starts right after an
inaccessible region and is followed by more than ``RESERVED_MIN`` of inaccessible address space
is a linear memory, and its length is the memory's size. Nothing else in a worker reserves
that much (glibc's arenas reserve 64 MiB).
"""

from __future__ import annotations

# A memory this close to its limit is full: allocators grow in steps (dlmalloc asks for what
# it needs, rounded to 64 KiB pages; CPython's arenas are 1 MiB), so the refused step is
# rarely the last page. A sixteenth of the limit, at least 1 MiB.
SLACK_MIN = 1 << 20
# The inaccessible rest of a linear memory's reservation is at least this large.
RESERVED_MIN = 1 << 30


def sizes(maps: str | None = None) -> list[int]:
    """The byte size of every linear memory in this process (``maps``: a /proc/<pid>/maps text)."""
    if maps is None:
        with open("/proc/self/maps") as f:
            maps = f.read()
    found: list[int] = []
    run_start: int | None = None       # start of the accessible run after an inaccessible region
    last_end, last_none = -1, False
    for line in maps.splitlines():
        span, perms = line.split(maxsplit=2)[:2]
        start, end = (int(x, 16) for x in span.split("-"))
        none = perms.startswith("---")
        adjacent = start == last_end
        if none and adjacent and run_start is not None and end - start >= RESERVED_MIN:
            found.append(start - run_start)
        if not none:
            run_start = run_start if adjacent and run_start is not None else (start if last_none and adjacent
                                                                              else None)
        else:
            run_start = None
        last_end, last_none = end, none
    return found


def full(limit: int, maps: str | None = None) -> int | None:
    """The size of a memory that could not grow by the slack within ``limit``, if there is one."""
    slack = max(SLACK_MIN, limit // 16)
    return max((s for s in sizes(maps) if s + slack > limit), default=None)

"""How many actors this host holds by default (``[root] max_actors``): as many idle actors as the
memory and pids the server may use, which are the host's, or less under a cgroup's limits (a
systemd unit's ``MemoryMax`` and ``TasksMax``, a container's). Each actor is a worker process:
past that, a runaway tree would take what the server's other actors need.
"""

from __future__ import annotations

import os
from pathlib import Path

# What an idle actor takes (README, Performance): its worker's own memory (6.8 MiB measured, and
# its share of the server's), and its pids (4 threads, each a pid; counted twice, so that half
# the pids stay for everything else).
ACTOR_MEMORY = 8 << 20
ACTOR_PIDS = 8
# v1 has no "max": an unlimited cgroup says a page-rounded 2**63 - 1
_UNLIMITED = 1 << 62


def host_actors(proc: Path = Path("/proc"), cgroups: Path = Path("/sys/fs/cgroup")) -> int:
    """The default bound on live actors (about 3000 on a 24 GiB host, 1000 under the systemd unit's
    ``MemoryMax=8G``; a busy actor takes more: an operator who knows the actors sets the bound)."""
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    pids = _number(proc / "sys" / "kernel" / "pid_max") or 32768       # (the kernel's default)
    memory = min(memory, _cgroup_limit(proc, cgroups, "memory", ("memory.max", "memory.limit_in_bytes")) or memory)
    pids = min(pids, _cgroup_limit(proc, cgroups, "pids", ("pids.max",)) or pids)
    return max(1, min(memory // ACTOR_MEMORY, pids // ACTOR_PIDS))


def _cgroup_limit(proc: Path, cgroups: Path, controller: str, files: tuple[str, ...]) -> int | None:
    """The least ``controller`` limit on this process's cgroup and its ancestors (v1 or v2), if any."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    least: int | None = None
    for line in lines:
        _, names, path = line.split(":", 2)
        if names == "":                                   # v2: one tree for every controller
            leaf = cgroups / "unified" if (cgroups / "unified").is_dir() else cgroups
        elif controller in names.split(","):
            leaf = cgroups / names
        else:
            continue
        for at in [leaf / path.strip().lstrip("/"), *(leaf / path.strip().lstrip("/")).parents]:
            for name in files:
                n = _number(at / name)
                if n is not None and n < _UNLIMITED:
                    least = n if least is None else min(least, n)
            if at == leaf:
                break
    return least


def _number(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):           # absent, or "max"
        return None

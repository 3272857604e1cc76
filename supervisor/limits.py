"""Per-actor OS limits for worker processes: cgroup v2, cgroup v1, or rlimits as a last resort.

Each actor runs in its own worker process. The server calls ``detect()`` once. Each worker,
while still a spare, makes its own group ``w-<pid>`` under ``controller.worker_parents()``
and moves in (``theater._linux``); when the server learns which pid became which actor it
calls ``controller.create("w-<pid>", memory, cpu, pids)``, which writes the limits, before it
answers the worker's hello, so nothing the actor does runs outside its limits. Without
cgroups the worker lowers its own data rlimit first thing. ``group.remove()`` after the
worker is reaped, ``controller.close()`` at shutdown.

Layouts:

* **cgroup v2** (production: systemd service with ``Delegate=yes``, own cgroup ``X`` writable).
  v2 forbids processes in a cgroup whose ``cgroup.subtree_control`` enables controllers
  (the "no internal processes" rule), and we must enable memory/cpu/pids in ``X`` to limit its
  children. So the server moves the processes of ``X`` (itself, plus any wrapper) into the leaf
  ``X/server``, enables ``+memory +cpu +pids`` in ``X`` and in ``X/<base>-<pid>``, and each actor
  gets the leaf ``X/<base>-<pid>/<actor>``. The per-server-pid parent keeps two servers (or test
  runs) in one cgroup from colliding on actor names. If ``X`` is ``/`` only the server moves:
  other processes there are not ours (if they block the rule, we fall back and say why).
* **cgroup v1** (this development machine): one group per hierarchy,
  ``/sys/fs/cgroup/{memory,cpu,pids}/<base>-<pid>/<actor>``. v1 has no internal-process rule,
  so the server stays where it is. Memory is required; cpu and pids are used when mounted.
* **rlimits** (unprivileged, containers without delegation): ``RLIMIT_DATA`` for process memory.
  Since Linux 4.7 it counts private writable mappings, so wasmtime's PROT_NONE address-space
  reservations don't count but committed linear memory does (measured with wasmtime 50: a
  component instantiates under 64 MiB and ``memory.grow`` past the limit returns -1).
  ``RLIMIT_AS`` is not used (wasmtime reserves GiBs of address space per memory), nor
  ``RLIMIT_NPROC`` (per user, not per process tree): no cpu share and no pids limit here.

OOM detection: v2 reads ``oom_kill`` from ``memory.events``; v1 reads ``oom_kill`` from
``memory.oom_control`` (Linux >= 4.13) and otherwise falls back to ``memory.failcnt > 0``, which
only says the limit was hit: together with a SIGKILL exit it means the OOM killer.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from theater._units import format_size

from . import cgroupfs

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")
CPU_PERIOD_US = 100_000
MIN_QUOTA_US = 1_000  # the kernel rejects smaller cfs quotas
V1_HIERARCHIES = ("memory", "cpu", "pids")
V2_CONTROLLERS = ("memory", "cpu", "pids")
SERVER_LEAF = "server"
# Tasks a worker may have (main, ZeroMQ's I/O thread, the watchdog, a handler's): a cap, not a budget.
WORKER_PIDS = 256


class LimitsRefused(Exception):
    """The host would not take an actor's limits for its worker."""


def _quota(cpu: float) -> int | None:
    """CFS quota in µs per 100 ms period for a share of one core; None = unlimited."""
    return max(MIN_QUOTA_US, int(cpu * CPU_PERIOD_US)) if cpu > 0 else None


# --------------------------------------------------------------------------- groups


class Group(ABC):
    """One actor's limits, written by the server into the group its worker joined."""

    @property
    @abstractmethod
    def path(self) -> Path | None:
        """The group's directory (v1: the memory one), None for rlimits."""

    def oom_killed(self) -> bool:
        """Whether the kernel OOM killer killed something in this group."""
        return False

    def memory_peak(self) -> int | None:
        """Highest memory use of the group in bytes, when the kernel tracks it."""
        return None

    def admit(self, pid: int) -> None:  # noqa: B027 - nothing to join for rlimits
        """Moves a process the server started (a compile) into this group; OSError if it cannot."""

    def remove(self, timeout: float = 1.0) -> None:  # noqa: B027 - nothing to remove for rlimits
        """Delete the group after its processes are gone. Never raises."""

    def remove_soon(self, later: Callable[[float, Callable[[], None]], object], tries: int = 20) -> None:
        """``remove`` without blocking the server's loop: the kernel may need a moment after the
        last exit, so it tries again every 50 ms (``later`` schedules on the loop)."""
        self.remove(timeout=0)
        if self.path is not None and self.path.exists() and tries > 0:
            later(0.05, lambda: self.remove_soon(later, tries - 1))


@dataclass
class CgroupGroup(Group):
    """A cgroup leaf: one dir (v2) or one dir per hierarchy, memory first (v1)."""

    version: int
    dirs: tuple[Path, ...]

    @property
    def path(self) -> Path | None:
        return self.dirs[0]

    def oom_killed(self) -> bool:
        mem = self.dirs[0]
        if self.version == 2:
            return (cgroupfs.keyed(cgroupfs.read(mem / "memory.events"), "oom_kill") or 0) > 0
        kills = cgroupfs.keyed(cgroupfs.read(mem / "memory.oom_control"), "oom_kill")
        if kills is not None:
            return kills > 0
        return (cgroupfs.integer(cgroupfs.read(mem / "memory.failcnt")) or 0) > 0  # hint only, see module docstring

    def memory_peak(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return cgroupfs.integer(cgroupfs.read(self.dirs[0] / name))

    def admit(self, pid: int) -> None:
        for d in self.dirs:
            cgroupfs.write(d / "cgroup.procs", pid)

    def remove(self, timeout: float = 1.0) -> None:
        for d in self.dirs:
            cgroupfs.rmdir(d, timeout)


@dataclass
class RlimitGroup(Group):
    """No group at all: the worker limits itself with setrlimit."""

    memory: int

    @property
    def path(self) -> Path | None:
        return None



# --------------------------------------------------------------------------- controllers


class Controller(ABC):
    """Makes one Group per actor. ``kind`` is "cgroup2", "cgroup1" or "rlimit"."""

    kind: str

    @abstractmethod
    def describe(self) -> str:
        """One line: which limits are enforced and how (for the server log and status)."""

    @abstractmethod
    def create(self, name: str, memory: int, cpu: float, pids: int) -> Group:
        """Make the group ``name`` (or take the one a worker made) and write its limits: memory in
        bytes (0 = none), cpu as a share of one core (0 = none), pids (0 = none). Raises OSError
        if the group can't be made or limited."""

    def for_worker(self, pid: int, memory: int, cpu: float) -> Group:
        """The group worker ``pid`` made and joined as a spare, given an actor's limits;
        LimitsRefused says why they could not be set (the start fails: never looser)."""
        try:
            return self.create(f"w-{pid}", memory, cpu, WORKER_PIDS)
        except OSError as e:
            raise LimitsRefused(f"cannot set its limits ({self.kind}: {e.strerror or e}); process_memory "
                                f"{format_size(memory)} may be below what its worker already uses") from None

    def close(self) -> None:  # noqa: B027 - nothing to clean up for rlimits
        """Remove this server's parent groups (and any leftover empty actor groups). Never raises."""

    def worker_parents(self) -> list[str]:
        """Where each worker makes its own group (``w-<pid>``) before it is needed; [] for rlimits."""
        return []


def _check_name(actor_id: str) -> str:
    if not actor_id or "/" in actor_id or actor_id in (".", "..") or "\0" in actor_id:
        raise ValueError(f"bad actor id for a cgroup name: {actor_id!r}")
    return actor_id


@dataclass
class Cgroup2Controller(Controller):
    parent: Path  # X/<base>-<pid>, controllers enabled in its subtree_control
    controllers: tuple[str, ...]
    kind: str = field(default="cgroup2", init=False)

    def describe(self) -> str:
        return f"cgroup v2 ({self.parent}): {_enforced(self.controllers)}"

    def create(self, actor_id: str, memory: int, cpu: float, pids: int) -> Group:
        leaf = self.parent / _check_name(actor_id)
        leaf.mkdir(exist_ok=True)
        try:
            if "memory" in self.controllers:
                cgroupfs.write(leaf / "memory.max", memory if memory > 0 else "max")
                if (leaf / "memory.swap.max").exists():
                    cgroupfs.write(leaf / "memory.swap.max", 0)
                with contextlib.suppress(OSError):  # Linux >= 4.19: kill the whole worker, not one thread's victim
                    cgroupfs.write(leaf / "memory.oom.group", 1)
            if "cpu" in self.controllers:
                quota = _quota(cpu)
                cgroupfs.write(leaf / "cpu.max", f"{quota if quota else 'max'} {CPU_PERIOD_US}")
            if "pids" in self.controllers:
                cgroupfs.write(leaf / "pids.max", pids if pids > 0 else "max")
        except OSError:
            cgroupfs.rmdir(leaf, 0.2)
            raise
        return CgroupGroup(2, (leaf,))

    def close(self) -> None:
        cgroupfs.remove_tree(self.parent)

    def worker_parents(self) -> list[str]:
        return [str(self.parent)]


@dataclass
class Cgroup1Controller(Controller):
    parents: dict[str, Path]  # hierarchy name -> /sys/fs/cgroup/<h>/<base>-<pid>; "memory" first
    kind: str = field(default="cgroup1", init=False)

    def describe(self) -> str:
        return f"cgroup v1 ({self.parents['memory']}): {_enforced(tuple(self.parents))}"

    def create(self, actor_id: str, memory: int, cpu: float, pids: int) -> Group:
        name = _check_name(actor_id)
        dirs: list[Path] = []
        try:
            for h, parent in self.parents.items():
                leaf = parent / name
                leaf.mkdir(exist_ok=True)
                dirs.append(leaf)
                if h == "memory":
                    self._memory(leaf, memory)
                elif h == "cpu":
                    quota = _quota(cpu)
                    cgroupfs.write(leaf / "cpu.cfs_period_us", CPU_PERIOD_US)
                    cgroupfs.write(leaf / "cpu.cfs_quota_us", quota if quota else -1)
                elif h == "pids":
                    cgroupfs.write(leaf / "pids.max", pids if pids > 0 else "max")
        except OSError:
            for d in dirs:
                cgroupfs.rmdir(d, 0.2)
            raise
        return CgroupGroup(1, tuple(dirs))

    @staticmethod
    def _memory(leaf: Path, memory: int) -> None:
        if memory <= 0:
            return
        cgroupfs.write(leaf / "memory.limit_in_bytes", memory)
        # memsw (memory + swap) must be >= the memory limit, so it is set second; absent
        # without swap accounting. swappiness=0 keeps the actor out of swap where it exists.
        for name, value in (("memory.memsw.limit_in_bytes", memory), ("memory.swappiness", 0)):
            if (leaf / name).exists():
                with contextlib.suppress(OSError):
                    cgroupfs.write(leaf / name, value)

    def close(self) -> None:
        for parent in self.parents.values():
            cgroupfs.remove_tree(parent)

    def worker_parents(self) -> list[str]:
        return [str(p) for p in self.parents.values()]


@dataclass
class RlimitController(Controller):
    reason: str = "not tried"
    kind: str = field(default="rlimit", init=False)

    def describe(self) -> str:
        return (
            "rlimits only (no writable cgroup): process memory via RLIMIT_DATA, no cpu share, "
            f"no pids limit; reason: {self.reason}"
        )

    def create(self, actor_id: str, memory: int, cpu: float, pids: int) -> Group:
        _check_name(actor_id)
        return RlimitGroup(memory)


def _enforced(available: tuple[str, ...]) -> str:
    names = {"memory": "process memory", "cpu": "cpu", "pids": "pids"}
    on = [names[c] for c in V2_CONTROLLERS if c in available]
    off = [names[c] for c in V2_CONTROLLERS if c not in available]
    return ", ".join(on) + (f"; not enforced: {', '.join(off)}" if off else "")


# --------------------------------------------------------------------------- detection


def _is_cgroup2_mount(root: Path, proc: Path) -> bool:
    text = cgroupfs.read(proc / "mounts") or ""
    target = os.path.realpath(root)
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2" and os.path.realpath(cgroupfs.unescape(parts[1])) == target:
            return True
    return False


def _own_cgroup2(proc: Path) -> str | None:
    for line in (cgroupfs.read(proc / "self" / "cgroup") or "").splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    return None


def _try_cgroup2(base_name: str, root: Path, proc: Path) -> Cgroup2Controller | str:
    """The v2 layout described in the module docstring, or the reason it can't be had."""
    if not _is_cgroup2_mount(root, proc):
        return f"{root} is not a cgroup2 mount"
    own = _own_cgroup2(proc)
    if own is None:
        return "no 0:: line in /proc/self/cgroup"
    x = root / own.lstrip("/")
    if x.name == SERVER_LEAF and x != root:  # detect() already ran in this process
        x = x.parent
    available = set((cgroupfs.read(x / "cgroup.controllers") or "").split())
    if "memory" not in available:
        return f"memory controller not delegated to {x}"
    if not (os.access(x, os.W_OK) and os.access(x / "cgroup.subtree_control", os.W_OK)):
        return f"{x} is not writable"
    ctrls = tuple(c for c in V2_CONTROLLERS if c in available)
    enable = " ".join(f"+{c}" for c in ctrls)
    try:
        server = x / SERVER_LEAF
        server.mkdir(exist_ok=True)
        # X is our delegated cgroup, so everything in it is ours. At "/" (the host root, exempt
        # from the rule, or a cgroup namespace's root) other processes are not ours to move.
        for pid in (cgroupfs.read(x / "cgroup.procs") or "").split() if x != root else ():
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                cgroupfs.write(server / "cgroup.procs", pid)
        cgroupfs.write(server / "cgroup.procs", os.getpid())  # in case the listing was stale
        cgroupfs.write(x / "cgroup.subtree_control", enable)
        _sweep(x, base_name)
        parent = x / f"{base_name}-{os.getpid()}"
        parent.mkdir(exist_ok=True)
        cgroupfs.write(parent / "cgroup.subtree_control", enable)
    except OSError as e:
        return f"cgroup2 setup in {x} failed: {e}"
    return Cgroup2Controller(parent, ctrls)


def _try_cgroup1(base_name: str, root: Path) -> Cgroup1Controller | str:
    parents: dict[str, Path] = {}
    reason = ""
    for h in V1_HIERARCHIES:
        hier = root / h
        if not (hier / "cgroup.procs").exists():
            if h == "memory":
                reason = f"no cgroup v1 memory hierarchy at {hier}"
                break
            continue
        _sweep(hier, base_name)
        parent = hier / f"{base_name}-{os.getpid()}"
        try:
            parent.mkdir(exist_ok=True)
            parents[h] = parent
        except OSError as e:
            if h == "memory":
                reason = f"cannot create {parent}: {e.strerror}"
                break
    if reason:
        for p in parents.values():
            cgroupfs.rmdir(p, 0.2)
        return reason
    return Cgroup1Controller(parents)


def _sweep(where: Path, base_name: str) -> None:
    """Removes the groups of servers that died (``<base>-<pid>``), and what their actors left there."""
    with contextlib.suppress(OSError):
        for d in where.glob(f"{base_name}-*"):
            pid = d.name.removeprefix(f"{base_name}-")
            if pid.isdigit() and not (PROC / pid).exists():
                cgroupfs.remove_tree(d, kill=True)


def detect(base_name: str = "theater", root: Path = CGROUP_ROOT, proc: Path = PROC) -> Controller:
    """Pick the best available mechanism: cgroup v2, then v1, then rlimits (with the reason).

    Side effects: v2 moves the server into ``X/server`` and enables controllers; both cgroup
    modes create this server's parent group(s), removed again by ``close()``.
    ``root`` and ``proc`` are injectable for tests against fake trees."""
    v2 = _try_cgroup2(base_name, root, proc)
    if isinstance(v2, Controller):
        return v2
    v1 = _try_cgroup1(base_name, root)
    if isinstance(v1, Controller):
        return v1
    return RlimitController(reason=f"cgroup2: {v2}; cgroup1: {v1}")

"""Linux process controls the processes share: parent-death signals, hardening a new worker.

What a freshly forked worker does to itself before it runs any actor code (``confine``):
join its cgroups (written by the server), lower its rlimits, drop core dumps and extra
descriptors, forbid privilege gain, and, when the server runs as root, become the
unprivileged user it was given.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import resource
import signal
from collections.abc import Collection, Sequence

_PR_SET_PDEATHSIG, _PR_GET_PDEATHSIG = 1, 2
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Asks the kernel to send ``sig`` when the parent exits; exits now if it already has."""
    if _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if parent is not None and os.getppid() != parent:
        os._exit(0)     # the parent died before the request took effect


def release_free_heap() -> None:
    """Gives the C heap's free pages back to the kernel (glibc's malloc_trim; elsewhere nothing):
    a long-running server's heap fragments, its RSS growing while what it holds stays flat."""
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def adopt_orphans() -> None:
    """Makes this process the subreaper of whatever it starts: orphans of its descendants become
    its children, not init's (a worker kills what a program left running: worker.commands; the
    fork server, what a worker killed left running: worker.zygote)."""
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def children() -> set[int]:
    """This process's children, those of all its threads: from /proc/self/task/*/children, or,
    on a kernel without them (CONFIG_PROC_CHILDREN), from each process's parent in /proc/*/stat."""
    pids: set[int] = set()
    if paths := glob.glob("/proc/self/task/*/children"):
        for path in paths:
            with contextlib.suppress(OSError), open(path) as f:
                pids.update(int(p) for p in f.read().split())
        return pids
    me = os.getpid()
    for name in filter(str.isdigit, os.listdir("/proc")):
        # the fields after the command's closing parenthesis (it may hold any byte): state, ppid
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{name}/stat", "rb") as f:
            if int(f.read().rsplit(b")", 1)[1].split()[1]) == me:
                pids.add(int(name))
    return pids


def kill_children(keep: Collection[int] = ()) -> set[int]:
    """SIGKILLs each child of this process but ``keep``, and the process group it leads (the
    jobs it started there); the pids signalled. Safe from pid reuse: a child's pid, and so a
    group of that number, stays its own until the child is reaped."""
    pids = children().difference(keep)
    for pid in pids:
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)
    return pids


def no_new_privileges() -> None:
    """setuid binaries and file capabilities no longer grant anything to this process or its children."""
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def close_fds_except(*keep: int) -> None:
    """Closes every inherited descriptor above stderr but ``keep``."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):     # the listing's own descriptor, already closed
                os.close(fd)


def join_new_cgroups(parents: Sequence[str], name: str) -> bool:
    """Makes the cgroup ``name`` under each parent and moves this process into it; False if any
    step failed. (Moving a process costs the kernel an RCU grace period, ~10 ms here: worth
    doing before the process is needed.)"""
    ok = True
    pid = str(os.getpid()).encode()
    for parent in parents:
        try:
            os.makedirs(os.path.join(parent, name), exist_ok=True)
            fd = os.open(os.path.join(parent, name, "cgroup.procs"), os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        except OSError:
            ok = False
    return ok


def lower_limit(which: int, value: int) -> None:
    """soft = hard = value, never above the current hard limit (raising it needs privilege)."""
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def set_data_limit(value: int) -> int:
    """The soft RLIMIT_DATA = ``value`` (at most the hard limit, left as it is), which this
    process may raise again: for limits on code it runs that makes no system calls (wasm).
    What was set."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (value, hard))
    return value


def data_size() -> int:
    """The bytes RLIMIT_DATA counts in this process now (``VmData``: private writable mappings)."""
    return _kib_field("/proc/self/status", "VmData:")


def memory_available() -> int:
    """What the kernel estimates it can give without swapping (``MemAvailable``), in bytes."""
    return _kib_field("/proc/meminfo", "MemAvailable:")


def _kib_field(path: str, name: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    raise OSError(f"{path} has no {name}")


def raise_nofile() -> int:
    """The server and the chain hold a connection per worker: soft descriptor limit = hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def harden(nofile: int = 1024) -> None:
    """No core dumps (they would hold actor state), a bounded number of descriptors, files
    private to the owner by default, and no privilege gain through setuid binaries."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    lower_limit(resource.RLIMIT_NOFILE, nofile)
    os.umask(0o077)
    no_new_privileges()


def become(uid: int, gid: int) -> None:
    """Drops to an unprivileged user for good (supplementary groups first, then gid, then uid).
    A change of user clears the parent-death signal (prctl(2)): it is set again."""
    sig, parent = ctypes.c_int(0), os.getppid()
    _libc.prctl(_PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if sig.value:
        die_with_parent(sig.value, parent)


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9 (and "signal N" for a number that is none)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"

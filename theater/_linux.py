"""Linux process controls the processes share: parent-death signals, hardening a new worker.

What a freshly forked worker does to itself before it runs any actor code (``confine``):
join its cgroups (written by the server), lower its rlimits, drop core dumps and extra
descriptors, forbid privilege gain, and, when the server runs as root, become the
unprivileged user it was given.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
from collections.abc import Sequence

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


def adopt_orphans() -> None:
    """Makes this process the subreaper of whatever it starts: orphans of its descendants become
    its children, not init's (a worker kills what a program left running: worker.commands)."""
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


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

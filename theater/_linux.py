"""Linux process controls the three processes share: parent-death signals, no-new-privileges."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Asks the kernel to send ``sig`` when the parent exits; exits now if it already has."""
    if _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if parent is not None and os.getppid() != parent:
        os._exit(0)     # the parent died before the request took effect


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

"""The fork server's side of its workers' seccomp filters: who made a fatal call, and which.

Each worker hands the fork server the listener of its filter (``worker.seccomp``). A fatal
call suspends the calling thread and makes the listener readable; the fork server reads the
notice (``SECCOMP_IOCTL_NOTIF_RECV``: the caller's pid and the call's number), kills the
worker (and the caller, when that is a program the worker started), and keeps the call's
name for the worker's exit report, so the server records the stop as reason ``seccomp``.
The suspended call is never answered: the process dies first. In log mode (``theater-server
--sandbox-log``) every call outside the allow-list comes here instead: it is logged, once per
call, and let through.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import struct

log = logging.getLogger("theater.zygote")

# _IOWR('!', 0, struct seccomp_notif): id u64, pid u32, flags u32, then seccomp_data
# (nr i32, arch u32, instruction pointer u64, six u64 arguments)
_NOTIF = struct.Struct("=QIIiIQ6Q")
_NOTIF_RECV = 0xC0000000 | (_NOTIF.size << 16) | (ord("!") << 8) | 0
# _IOWR('!', 1, struct seccomp_notif_resp): id u64, val s64, error s32, flags u32
_RESP = struct.Struct("=QqiI")
_NOTIF_SEND = 0xC0000000 | (_RESP.size << 16) | (ord("!") << 8) | 1
_CONTINUE = 1                   # SECCOMP_USER_NOTIF_FLAG_CONTINUE: the kernel makes the call


class Violations:
    def __init__(self, log_mode: bool = False) -> None:
        self.log_mode = log_mode
        self.listeners: dict[int, int] = {}      # listener fd -> the worker it belongs to
        self.calls: dict[int, str] = {}          # worker pid -> the fatal call it made
        self.logged: set[str] = set()            # log mode: the calls seen outside the list

    def watch(self, listener: int, pid: int) -> None:
        self.listeners[listener] = pid

    def read(self, listener: int) -> None:
        """A notice (or the worker's end: then the listener is closed and forgotten)."""
        pid = self.listeners[listener]
        buf = bytearray(_NOTIF.size)
        try:
            fcntl.ioctl(listener, _NOTIF_RECV, buf, True)
        except OSError as e:
            if e.errno in (errno.EINTR, errno.EAGAIN):
                return
            self.forget(listener)      # ENOENT: the caller died meanwhile; else the filter is gone
            return
        from . import seccomp  # only with filters (so libseccomp) in force: imported already

        notice, caller, _flags, nr, *_ = _NOTIF.unpack(buf)
        call = seccomp.name(nr)
        if self.log_mode:
            if call not in self.logged:
                self.logged.add(call)
                log.warning("seccomp log mode: worker %d made %s, outside the allow-list (let through)", pid, call)
            with contextlib.suppress(OSError):      # the caller may be gone already
                fcntl.ioctl(listener, _NOTIF_SEND, _RESP.pack(notice, 0, 0, _CONTINUE))
            return
        self.calls.setdefault(pid, call)
        log.warning("worker %d: forbidden system call %s (by pid %d): killed", pid, call, caller)
        for target in {pid, caller}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)

    def forget(self, listener: int) -> None:
        self.listeners.pop(listener, None)
        with contextlib.suppress(OSError):
            os.close(listener)

    def ended(self, pid: int) -> str | None:
        """The worker ``pid`` has been reaped: the fatal call it made, if any; its listener closed."""
        for fd, owner in list(self.listeners.items()):
            if owner == pid:
                self.forget(fd)
        return self.calls.pop(pid, None)

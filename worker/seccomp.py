"""The worker's seccomp filter: built by libseccomp (through pyseccomp) in the fork server, loaded by
each worker with one system call, its fatal calls reported to the fork server.

The allow-list is ``worker.syscalls``; here are the arguments checked for the broad calls and
how the filter is put in place. libseccomp compiles the rules to BPF once, in the fork
server, for both kinds of worker (with and without granted programs); a worker loads the
bytes with ``seccomp(SECCOMP_SET_MODE_FILTER)``, on all its threads at once (``TSYNC``: the
ZeroMQ threads exist by then), and gets a *listener* descriptor back: a fatal call is not
made but suspended, and announced on that descriptor. The worker hands the listener to the
fork server and closes its own copy (a worker holding it could answer for itself); the fork
server kills the worker and reports the call's name (``worker.violations``). Should the fork
server be gone, a suspended call fails with ENOSYS. The replayer (``worker.replaysandbox``)
loads the same list, built with ``kill``: it takes no listener, and a fatal call kills it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket

import pyseccomp as sc

from .syscalls import ALLOWED, COMMANDS, FATAL

# seccomp(2)
_SET_MODE_FILTER = 1
_FLAG_TSYNC, _FLAG_NEW_LISTENER, _FLAG_TSYNC_ESRCH = 1, 8, 16
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# clone(2) flags: a thread shares everything; a new namespace is never allowed
_CLONE_THREAD = 0x00010000
_CLONE_NEW = {"CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
              "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
              "CLONE_NEWNET": 0x40000000}
_NEW_ANY = sum(_CLONE_NEW.values())
_AF_UNIX = 1
# ioctl(2) requests libzmq, CPython and glibc make on their own descriptors: non-blocking,
# close-on-exec, bytes waiting, "is this a terminal?"
_IOCTLS = {"FIONBIO": 0x5421, "FIOCLEX": 0x5451, "FIONCLEX": 0x5450, "FIONREAD": 0x541B, "TCGETS": 0x5401,
           "TIOCGWINSZ": 0x5413}
# prctl(2) options: thread names (setproctitle, Rust, libzmq), naming anonymous memory (glibc),
# the parent-death signal, and reading a few flags
_PRCTLS = {"PR_SET_PDEATHSIG": 1, "PR_GET_PDEATHSIG": 2, "PR_GET_DUMPABLE": 3, "PR_SET_NAME": 15,
           "PR_GET_NAME": 16, "PR_GET_SECCOMP": 21, "PR_CAPBSET_READ": 23, "PR_GET_NO_NEW_PRIVS": 39,
           "PR_SET_VMA": 0x53564D41}


def build(commands: bool, log: bool = False, kill: bool = False) -> bytes:
    """The filter as BPF: ``commands`` lets the worker start the programs its grant lists;
    ``log`` has every call outside the list announced to the fork server, which logs it and lets
    it through (for deriving the list on a new platform, never in production). A call in FATAL
    (or a new namespace) is announced to the fork server, which kills the worker; with ``kill``
    (the replayer, which has no fork server) the kernel kills the process itself."""
    f = sc.SyscallFilter(sc.NOTIFY if log else sc.ERRNO(errno.EPERM))
    fatal = sc.KILL_PROCESS if kill else sc.NOTIFY
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)       # another ABI's numbers (int 0x80, x32)
    allowed = {name for group in ALLOWED.values() for name in group}
    if commands:
        allowed |= set(COMMANDS)
    for name in sorted(allowed):
        _rule(f, sc.ALLOW, name)
    if not log:        # (in log mode the default announces them already)
        for name in sorted({n for group in FATAL.values() for n in group} - allowed):
            _rule(f, fatal, name)
    for domain_call in ("socket", "socketpair"):
        f.add_rule(sc.ALLOW, domain_call, sc.Arg(0, sc.EQ, _AF_UNIX))
    # threads always; processes only with commands (glibc's fork and posix_spawn use clone too)
    mask, want = (_NEW_ANY, 0) if commands else (_NEW_ANY | _CLONE_THREAD, _CLONE_THREAD)
    f.add_rule(sc.ALLOW, "clone", sc.Arg(0, sc.MASKED_EQ, mask, want))
    for bit in _CLONE_NEW.values() if not log else ():
        f.add_rule(fatal, "clone", sc.Arg(0, sc.MASKED_EQ, bit, bit))
    # clone3 hides its flags in memory the filter cannot read: ENOSYS makes glibc use clone
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for request in _IOCTLS.values():
        f.add_rule(sc.ALLOW, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    for option in _PRCTLS.values():
        f.add_rule(sc.ALLOW, "prctl", sc.Arg(0, sc.EQ, option))
    memfd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        with open(memfd, "wb", closefd=False) as out:
            f.export_bpf(out)
        os.lseek(memfd, 0, os.SEEK_SET)
        return _read_all(memfd)
    finally:
        os.close(memfd)


def _rule(f: sc.SyscallFilter, action: int, name: str) -> None:
    """Adds ``name`` if this architecture has it (libseccomp knows every architecture's names)."""
    if sc.resolve_syscall(sc.Arch.NATIVE, name) < 0:
        return
    f.add_rule(action, name)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


class _Filter(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


SECCOMP_NR = sc.resolve_syscall(sc.Arch.NATIVE, "seccomp")


def load(bpf: bytes, listener: bool = True) -> int:
    """Puts the filter on every thread of this process; the listener descriptor for its fatal calls
    (``listener``: a worker's; else 0). Needs ``no_new_privs``. OSError if the kernel refuses (the
    process must not go on)."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _Filter(len(bpf) // 8, ctypes.addressof(buf))
    flags = _FLAG_TSYNC | _FLAG_TSYNC_ESRCH | (_FLAG_NEW_LISTENER if listener else 0)
    fd = _libc.syscall(ctypes.c_long(SECCOMP_NR), ctypes.c_uint(_SET_MODE_FILTER), ctypes.c_uint(flags),
                       ctypes.byref(prog))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
    return int(fd)


def hand_over(listener: int, channel: socket.socket) -> None:
    """Gives the fork server the listener, then forgets it (a worker must never hold its own)."""
    try:
        socket.send_fds(channel, [b"listener"], [listener])
    finally:
        os.close(listener)


def name(number: int) -> str:
    """A system call's name on this architecture (its number if libseccomp does not know it)."""
    try:
        return sc.resolve_syscall(sc.Arch.NATIVE, number).decode()
    except ValueError:
        return f"syscall {number}"

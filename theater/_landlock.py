"""Landlock (Linux >= 5.13): a process confines its own view of the filesystem, without privilege.

Our own ctypes module, not a PyPI binding: the kernel interface is three system calls and
three small structures, and the bindings on PyPI were dev releases when this was written.

A ruleset *handles* a set of access rights: every right it handles is denied everywhere except
beneath the paths a rule grants it on. What the kernel knows depends on its Landlock ABI
(``abi()``): rights a kernel does not know are left out of the ruleset, so a policy written for
ABI 7 works (with less) on ABI 1. ``restrict`` applies to the calling thread and to the threads
and processes it creates afterwards, never to threads that already exist: call it before any.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Collection, Iterable

from .beneath import open_exact

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446   # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# filesystem rights, and the ABI that introduced each
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
# rights that make sense on a file (a rule on a file may grant only these)
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
# TCP (ABI 4): handled with no rule, a process can neither bind nor connect a TCP socket
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
# scopes (ABI 6): no connecting to abstract unix sockets, no signals, outside the domain
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

READ = READ_FILE | READ_DIR
WRITE = WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM \
    | REFER | TRUNCATE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _call(nr: int, *args: object) -> int:
    res = _libc.syscall(ctypes.c_long(nr), *args)
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(res)


def abi() -> int:
    """The kernel's Landlock ABI version; 0 if it has none (too old, or not enabled at boot)."""
    try:
        return _call(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
            return 0
        raise


def _open_exact(path: str) -> int:
    """``path`` (a real path) opened as it is: if a step of it is a symlink now (swapped in since
    it was checked), an OSError, not what the link leads to."""
    try:
        return open_exact(path, os.O_PATH)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"{path} is not the directory that was checked (a symlink now)") from None
        raise


def handled_fs(version: int) -> int:
    """Every filesystem right the kernel of this ABI knows (all of them are denied unless granted)."""
    return _FS_BY_ABI.get(version, (1 << 16) - 1) if version > 0 else 0


def restrict(rules: Iterable[tuple[str, int]], version: int, exact: Collection[str] = ()) -> list[str]:
    """Confines this thread (and what it starts from now on) to ``rules``: (path, rights) pairs,
    the rights granted beneath a directory (or on a file, its file rights only). Paths that do
    not exist are skipped and returned. Paths in ``exact`` (real paths someone checked) are
    taken only as they are: one that is, or passes through, a symlink now is an OSError. Also,
    from ABI 4, no TCP bind or connect; from ABI 6, no signals and no abstract unix sockets
    outside the domain. Needs ``no_new_privs`` (or CAP_SYS_ADMIN). OSError if the kernel refuses."""
    fs = handled_fs(version)
    attr = _RulesetAttr(fs, _NET_BIND_TCP | _NET_CONNECT_TCP if version >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if version >= 6 else 0)
    size = 8 if version < 4 else 16 if version < 6 else 24
    ruleset = _call(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    missing = []
    try:
        for path, rights in rules:
            try:
                fd = _open_exact(path) if path in exact else os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError as e:
                if path in exact and not isinstance(e, FileNotFoundError):
                    raise
                missing.append(path)
                continue
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    rights &= FILE_RIGHTS
                beneath = _PathBeneath(rights & fs, fd)
                _call(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                      ctypes.byref(beneath), ctypes.c_uint32(0))
            finally:
                os.close(fd)
        _call(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return missing

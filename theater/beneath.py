"""Opening paths strictly beneath one directory: what confines the ``filesystem`` handler,
and the server's reads of the files a spawn names (``theater.paths.read_regular``); and real
paths taken only as they are (``open_exact``: a Landlock view's granted directories).

A path an actor gives is resolved by the kernel relative to a descriptor of the granted
directory, never by comparing strings: ``openat2`` with ``RESOLVE_BENEATH`` fails with
``EXDEV`` when ``..``, an absolute path or a symlink (at any depth, followed at the time of
the open, so no check-then-use race) would lead outside, and ``RESOLVE_NO_MAGICLINKS``
refuses ``/proc/self/fd``-style links. Where the kernel lacks ``openat2`` (before 5.6, or a
seccomp filter that hides it) the fallback walks the path one component at a time with
``O_NOFOLLOW``: stricter, since then no symlink is followed at all, even one that stays inside.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat

_SYS_OPENAT2 = 437                  # the same number on every architecture (added in Linux 5.6)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class Escape(OSError):
    """The path leads outside the directory (or is absolute): refused, whatever is there."""


def _openat2(root: int, path: str, flags: int, mode: int,
             resolve: int = _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_long(root), ctypes.c_char_p(os.fsencode(path)),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        if err == errno.EXDEV:
            raise Escape(err, "leads outside the granted directory", path)
        raise OSError(err, os.strerror(err), path)
    return fd


def _walk(root: int, path: str, flags: int, mode: int) -> int:
    """The fallback: every component opened with O_NOFOLLOW from the one before; ``..`` refused."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Escape(errno.EXDEV, "leads outside the granted directory", path)
    if not parts:
        return os.open(".", flags | os.O_CLOEXEC, dir_fd=root)
    fd = root
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            if fd != root:
                os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
    finally:
        if fd != root:
            os.close(fd)


def _probe() -> bool:
    """Whether this kernel (and any seccomp filter) lets openat2 through."""
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        os.close(_openat2(root, ".", os.O_PATH, 0))
    except OSError as e:
        return e.errno not in (errno.ENOSYS, errno.EPERM)
    finally:
        os.close(root)
    return True


HAVE_OPENAT2 = _probe()


def open_beneath(root: int, path: str, flags: int, mode: int = 0o600, openat2: bool | None = None) -> int:
    """A descriptor for ``path`` (relative, "" = the directory itself) beneath the directory
    ``root``; ``Escape`` if it is absolute or leads outside, OSError for everything else."""
    if path.startswith("/"):
        raise Escape(errno.EXDEV, "is absolute (paths are relative to the granted directory)", path)
    if "\0" in path:
        raise OSError(errno.EINVAL, "contains a NUL byte", path)
    return (_openat2 if (HAVE_OPENAT2 if openat2 is None else openat2) else _walk)(root, path or ".", flags, mode)


def open_exact(path: str, flags: int) -> int:
    """A descriptor for the real path ``path`` as it is: if any step of it is a symlink (one
    swapped in since someone resolved and checked it), OSError ELOOP, not what it leads to."""
    if not path.startswith("/") or "\0" in path:
        raise OSError(errno.EINVAL, "not an absolute path", path)
    if HAVE_OPENAT2:
        return _openat2(_AT_FDCWD, path, flags, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        fd = _walk(root, path, flags, 0)            # every step with O_NOFOLLOW: no symlink at all ...
    finally:
        os.close(root)
    if stat.S_ISLNK(os.fstat(fd).st_mode):          # ... but O_PATH opens a last one as itself
        os.close(fd)
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    return fd


def make_dirs_exact(path: str, mode: int) -> None:
    """``os.makedirs(path, mode, exist_ok=True)`` for a real path, without following a symlink
    swapped into it since it was resolved (that would make directories where the link leads):
    OSError (ELOOP, ENOTDIR) at the first step that is not a directory."""
    if not path.startswith("/") or "\0" in path:
        raise OSError(errno.EINVAL, "not an absolute path", path)
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in (p for p in path.split("/") if p not in ("", ".")):
            if part == "..":
                raise OSError(errno.EINVAL, "not a real path", path)
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, mode, dir_fd=fd)
            nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def split(path: str) -> tuple[str, str]:
    """(parent, last component) of a relative path; the last is never empty, "." or ".."."""
    parent, _, name = path.rstrip("/").rpartition("/")
    if name in ("", ".", ".."):
        raise OSError(errno.EINVAL, "does not name an entry in a directory", path)
    return parent, name

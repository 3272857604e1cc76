"""A worker's own sandbox: what it does to itself, in order, before any actor code exists in it.

The fork server prepares once (``Sandbox.start``): a network namespace for itself and every
worker it will fork, the Landlock ABI, the seccomp filters compiled to BPF. A spare, once
given its actor (or, forked for the usual confinement, while it waits: ``worker.spare``), then:

1. ``enter``: lowers its limits, hardens itself (no core dumps, ``no_new_privs``), drops to
   ``--user`` or, staying root, drops every capability; makes a ``new_dir`` grant's directory;
   then restricts its filesystem view with Landlock. All this comes before the worker opens
   its ZeroMQ sockets, because Landlock binds only the calling thread and the threads it
   starts later, and libzmq starts two threads with its first socket.
2. opens its sockets (and, given its actor, sends its hello: ``worker.actor``), then ``seal``:
   loads the seccomp filter on every thread and hands its listener to the fork server
   (``worker.seccomp``).

Then the actor's component is loaded and instantiated. A step that fails ends the worker
(start failed, reason ``sandbox``): a worker never runs less confined than it was told.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theater import _landlock as ll
from theater import _linux, beneath, sandbox
from theater.errors import Failure
from theater.paths import Home

from . import commands, executables

log = logging.getLogger("theater.zygote")

# Read-only, besides the interpreter's own directories: shared libraries (a late dlopen, and
# the programs a grant lists), the loader's cache, the time zone, /proc (the worker's own
# memory map; other processes' files there are closed to it: Landlock forbids ptrace-like
# access outside its domain), random devices.
LIBRARIES = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib")
READABLE = ("/etc/ld.so.cache", "/etc/localtime", "/usr/share/zoneinfo", "/proc", "/dev/urandom", "/dev/random")
_CAP_VERSION_3 = 0x20080522
_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Failure):
    """A layer the worker was told to put up could not be: it must not run (reason ``sandbox``)."""

    def __init__(self, message: str) -> None:
        super().__init__("sandbox", message)


@dataclass
class Sandbox:
    layers: tuple[str, ...]
    landlock_abi: int = 0
    filters: dict[bool, bytes] = field(default_factory=dict)    # commands granted? -> BPF
    python: tuple[str, ...] = ()      # what every worker reads of the interpreter (resolved once)

    @classmethod
    def start(cls, layers: list[str], log_mode: bool, home: Home) -> Sandbox:
        """In the fork server, before the first spare: each layer it can put up (those it cannot
        are logged and left out: the server's start line warned already)."""
        on = [layer for layer in layers if layer in sandbox.LAYERS]
        if "net" in on:
            try:
                own_network()
            except OSError as e:
                log.error("zygote: workers keep the host's network: %s", e)
                on.remove("net")
        abi = ll.abi() if "landlock" in on else 0
        python = python_dirs(home, sys.path) if abi else ()
        filters = {}
        if "seccomp" in on:
            from . import seccomp  # here, not above: without libseccomp the fork server must still run

            filters = {c: seccomp.build(c, log_mode) for c in (False, True)}
        if log_mode and filters:
            log.warning("zygote: seccomp in log mode: every system call is let through, those outside "
                        "the allow-list logged here")
        return cls(tuple(on), abi, filters, python)

    def enter(self, home: Home, confine: dict[str, Any]) -> None:
        """Step 1 (see the module's docstring). Raises SandboxError."""
        lower_data(confine)
        _linux.harden(confine.get("nofile", 1024))
        if confine.get("user"):
            _linux.become(*confine["user"])
        else:
            drop_capabilities()
        view = confine.get("view") or {}
        for path in view.get("make", ()):
            with contextlib.suppress(OSError):      # the filesystem handler says why, in its own words
                beneath.make_dirs_exact(path, 0o700)      # resolved at the launch: no link followed
        if self.landlock_abi:
            try:
                ll.restrict(rules(home, view, self.python), self.landlock_abi, exact=view.get("write", ()))
            except OSError as e:
                raise SandboxError(f"Landlock refused the worker's view: {e.strerror}") from None

    def seal(self, channel: socket.socket, confine: dict[str, Any]) -> None:
        """Step 2: the seccomp filter on every thread, its listener handed to the fork server over
        ``channel`` (left open: a spare confined ahead still waits on it for its actor)."""
        if not self.filters:
            return
        from . import seccomp  # imported already by Sandbox.start (see there)

        runs = bool((confine.get("view") or {}).get("run"))
        try:
            listener = seccomp.load(self.filters[runs])
        except OSError as e:
            raise SandboxError(str(e)) from None
        try:
            seccomp.hand_over(listener, channel)
        except OSError as e:
            raise SandboxError(f"cannot hand the seccomp listener to the fork server: {e.strerror}") from None


def lower_data(confine: dict[str, Any]) -> None:
    """The per-actor data rlimit, when the server has no cgroups to limit memory with."""
    if confine.get("data_limit"):
        _linux.lower_limit(resource.RLIMIT_DATA, confine["data_limit"])


def rules(home: Home, view: dict[str, list[str]], python: tuple[str, ...]) -> list[tuple[str, int]]:
    """The worker's Landlock rules: (path, rights)."""
    runs = [p for p in (_program(name) for name in view.get("run", ())) if p]
    out = [*readable(python), ("/dev/null", ll.READ_FILE | ll.WRITE_FILE)]
    out += [(str(home.cache), ll.READ | ll.REMOVE_FILE)]                  # a damaged compiled form is removed
    out += [(p, ll.READ | ll.WRITE) for p in view.get("write", ())]
    # the programs, their loaders and a script's interpreter; nothing else (worker.executables)
    out += [(p, ll.READ_FILE | ll.EXECUTE) for p in dict.fromkeys(x for p in runs
                                                                   for x in executables.needed(p, commands.SAFE_PATH))]
    return out


def readable(python: tuple[str, ...]) -> list[tuple[str, int]]:
    """What every sandboxed process reads (and nothing more): the interpreter's directories
    (``python_dirs``), the system's libraries, ``READABLE``."""
    return [(p, ll.READ) for p in (*python, *LIBRARIES, *READABLE)]


def python_dirs(home: Home, search: list[str]) -> tuple[str, ...]:
    """The interpreter's directories: its prefixes, ``search`` (its module search path) and this
    installation's packages, less the home (resolved once: ``readable``)."""
    return tuple(sandbox.outside({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                                  *search, *_package_roots()}, home.root))


def _package_roots() -> set[str]:
    """Where this installation's packages are (an editable install is not on sys.path)."""
    return {str(Path(m.__file__).resolve().parent.parent) for m in (sandbox, commands) if m.__file__}


def _program(name: str) -> str | None:
    found = name if name.startswith("/") else shutil.which(name, path=commands.SAFE_PATH)
    return os.path.realpath(found) if found else None


def own_network() -> None:
    """unshare(2) this process into a new network namespace (and, not being root, a user
    namespace mapping only its own ids), with the loopback left down."""
    uid, gid = os.geteuid(), os.getegid()
    flags = sandbox.netns_flags()
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    if flags & sandbox.CLONE_NEWUSER:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """A worker left running as root (no --user), or the replayer, keeps its uid but loses every
    capability (of the calling thread: call it before any other starts): it can no longer pass
    over file permissions, and with no_new_privs no program it starts regains any."""
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(_CapHeader(_CAP_VERSION_3, 0)), data) != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"cannot drop capabilities: {os.strerror(err)}")

"""Which OS-level isolation layers a worker gets, as the server sees them (docs/isolation.md).

Three layers beyond the process, its cgroup and rlimits, each used where the kernel has it and
said at start (``describe``), with a warning for each that is missing:

* ``net``: the fork server, and so every worker, in a network namespace of its own with an
  unconfigured loopback: no TCP or UDP to anywhere (ZeroMQ's ipc:// paths still work).
* ``landlock``: each worker's filesystem view (read: the interpreter, its libraries, the
  component cache; write: only what its grants name); also no TCP and
  no signals outside itself.
* ``seccomp``: each worker's system calls, an allow-list (``worker.syscalls``); a fatal one
  ends it and is recorded as reason ``seccomp``.

The server finds out which layers this machine allows (``detect``), tells the fork server
(``python -m worker serve --sandbox net,landlock,seccomp``), and sends, with each spawn, the
paths the actor's grants name (``view``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import _landlock, grants
from .manifest import Manifest

LAYERS = ("net", "landlock", "seccomp")
CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
_PR_GET_SECCOMP = 21
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Layers:
    on: tuple[str, ...] = ()
    missing: dict[str, str] = field(default_factory=dict)     # layer -> why it is not in force
    landlock_abi: int = 0

    def args(self) -> list[str]:
        """For ``python -m worker serve``."""
        return ["--sandbox", ",".join(self.on)] if self.on else []

    def describe(self) -> str:
        """One line for the start message and the log: what is in force, what is not and why."""
        if not self.on and not self.missing:
            return "off (--no-sandbox): workers see the filesystem and network of their user"
        words = {"net": "no network (a network namespace of their own)",
                 "landlock": f"a confined filesystem view (Landlock ABI {self.landlock_abi})",
                 "seccomp": "a system call allow-list (seccomp)"}
        text = ", ".join(words[layer] for layer in self.on) or "none"
        if self.missing:
            text += "; NOT in force: " + "; ".join(f"{words[k].split(' (')[0]} ({why})"
                                                   for k, why in self.missing.items())
        return text


def detect(enabled: bool = True) -> Layers:
    """The layers this machine and this user allow (each tried, not assumed)."""
    if not enabled:
        return Layers()
    abi = _landlock.abi()
    problems = {"net": _netns_problem(), "landlock": None if abi else "the kernel has no Landlock",
                "seccomp": _seccomp_problem()}
    return Layers(tuple(k for k, why in problems.items() if why is None),
                  {k: why for k, why in problems.items() if why is not None}, abi)


def netns_flags() -> int:
    """unshare(2) flags for a network namespace: root needs only that; another user also needs a
    user namespace of its own (where the kernel lets unprivileged users have one)."""
    return CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET


def _netns_problem() -> str | None:
    """Tried in a child (unsharing is for good): None if a network namespace can be made."""
    pid = os.fork()
    if pid == 0:
        code = 0 if _libc.unshare(netns_flags()) == 0 else min(ctypes.get_errno(), 255)
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return None if code == 0 else f"cannot make a network namespace: {os.strerror(code) if code > 0 else code}"


def _seccomp_problem() -> str | None:
    if _libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) < 0:
        return "the kernel has no seccomp"
    try:
        import pyseccomp  # noqa: F401 - needs libseccomp.so.2 (Debian: libseccomp2)
    except (ImportError, RuntimeError) as e:
        return f"no libseccomp: {e}"
    return None


def view(manifest: Manifest, base: str) -> dict[str, list[str]]:
    """What the actor's grants need in its worker's filesystem view (``grants.Spec.view``):
    ``write``: directories it reads and writes; ``make``: those it may create first (new_dir);
    ``run``: programs it may start."""
    out: dict[str, list[str]] = {"write": [], "make": [], "run": []}
    for h in manifest.handlers:
        spec = grants.SPECS.get(h.type)
        if spec is not None and spec.view is not None:
            for key, paths in spec.view(h.config, base).items():
                out[key].extend(paths)
    return out


def view_beyond(child: dict[str, list[str]], parent: dict[str, list[str]]) -> str | None:
    """Why a child's view (``view``, resolved when it was made) reaches past its parent's, or None.
    The grants were compared at the spawn (``theater.attenuation``); this compares the paths the
    worker will be given, resolved once: a parent that can write in its directory could swap a
    folder for a symlink between that check and this resolution."""
    for path in child["write"]:
        if not any(path == mine or path.startswith(mine.rstrip(os.sep) + os.sep) for mine in parent["write"]):
            return f"{path} is outside its parent's directories (it changed since the spawn was checked)"
    return None


def outside(paths: Iterable[str | Path], private: Path) -> list[str]:
    """``paths`` less any that is ``private`` or holds it or lies inside it (the home's keys and
    chains must not enter a worker's view through, say, a current directory on sys.path)."""
    keep = []
    for p in paths:
        with contextlib.suppress(OSError):
            real = Path(p).resolve()
            if not (real == private or real.is_relative_to(private) or private.is_relative_to(real)):
                keep.append(str(real))
    return list(dict.fromkeys(keep))


"""Who may use the management socket (``run/theater.sock``): a local process of the server's
user, but never an actor's worker nor anything a worker started.

The socket's mode (0600) lets in every process of the server's user, and without ``--user``
the workers run as that user: a worker whose actor escaped wasmtime into native code could
start, stop and read any actor, and start one granted the home (the host key). So each
message's sender (SO_PEERCRED, which a peer cannot choose: ``theater.peercred``) is checked:
a process in one of the workers' cgroups (a process stays in its group however it is
reparented), descended from the worker fork server, or in a worker's network namespace (the
sandbox gives each worker one, and what it starts inherits it; each is noted at the worker's
hello, and kept after it exits: a process it left may hold it still) is refused; a client in
some other namespace (a container) is not, nor one whose process cannot be read (another pid
namespace: its pid is 0). A verdict is kept per process (its pid and start time: a pid reused
later is judged again).
"""

from __future__ import annotations

import os
from collections.abc import Callable

# Verdicts kept at most (then forgotten at once: each is cheap to make again).
MAX_KEPT = 4096
# How far up the parents go looking for the fork server.
MAX_DEPTH = 64
# Workers' network namespaces kept (the oldest forgotten first).
MAX_NAMESPACES = 65536


class Callers:
    def __init__(self, fork_server: Callable[[], int | None], worker_groups: list[str]) -> None:
        self._fork_server = fork_server                 # its pid (it changes if it restarts)
        # /proc/<pid>/cgroup names a group by its path under its hierarchy: the parents'
        # last parts (``theater-<pid>``) are this server's, and every worker's group is inside
        self._groups = tuple(f"/{os.path.basename(g.rstrip('/'))}/" for g in worker_groups)
        self._netns = _netns(os.getpid())              # the server's: the workers' without a sandbox
        self._kept: dict[tuple[int, str], bool] = {}
        self._namespaces: dict[str, None] = {}          # workers' network namespaces, oldest first

    def note(self, pid: int) -> None:
        """A worker said hello (confined by then): its network namespace is a worker's for good."""
        netns = _netns(pid)
        if netns is not None and netns != self._netns:
            self._namespaces.pop(netns, None)
            self._namespaces[netns] = None
            if len(self._namespaces) > MAX_NAMESPACES:
                del self._namespaces[next(iter(self._namespaces))]

    def worker(self, pid: int) -> bool:
        """Whether ``pid`` is a worker, or was started by one."""
        started = _stat(pid)
        if started is None:
            return False        # gone, or not ours to read (another pid namespace: pid 0)
        key = (pid, started[1])
        verdict = self._kept.get(key)
        if verdict is None:
            if len(self._kept) >= MAX_KEPT:
                self._kept.clear()
            verdict = self._kept[key] = self._judge(pid, started[0])
        return verdict

    def _judge(self, pid: int, parent: int) -> bool:
        netns = _netns(pid)
        if netns is not None and netns in self._namespaces:
            return True
        if self._groups:
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    groups = f.read()
            except OSError:
                groups = ""
            if any(g in groups for g in self._groups):
                return True
        fork_server = self._fork_server()
        for _ in range(MAX_DEPTH):
            if parent <= 1:
                return False
            if parent == fork_server:
                return True
            up = _stat(parent)
            if up is None:
                return False
            parent = up[0]
        return False


def _netns(pid: int) -> str | None:
    """The network namespace of ``pid`` (None where it cannot be read: another user's process)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of ``pid``, from /proc/<pid>/stat; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()      # after the command name, which may hold anything
    return int(fields[1]), fields[19].decode()

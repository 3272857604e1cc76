"""The fork server: imports everything a worker needs, compiles nothing, forks one process per actor.

Starting a fresh interpreter and importing wasmtime costs ~60 ms; forking this process
costs ~3 ms. So the server starts one zygote, and each actor is a fork of it. The zygote
keeps one *spare* child already forked, with its ZeroMQ context (and I/O thread) made,
waiting on a pipe for its assignment; a spawn hands the spare an actor and forks the
next spare. wasmtime must never compile before a fork (its compile thread pool
deadlocks in the child), so the zygote only imports and never creates an engine.

The zygote is the workers' parent: it reaps them and reports each exit status to the
server over a SOCK_SEQPACKET socket (one JSON message per packet). It dies with the
server (PR_SET_PDEATHSIG), and its workers die with it, after flushing their events.

Messages, server -> zygote: ``{"op": "spawn", "actor", "name", "confine"}`` (see ``confine``).
Zygote -> server: ``{"op": "spawned", "actor", "pid"}``, ``{"op": "exited", "pid", "status"}``.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import select
import signal
import socket
import sys

import orjson
import setproctitle
import zmq

from theater import _linux
from theater.paths import Home

from . import actor, wit

log = logging.getLogger("theater.zygote")


class Zygote:
    def __init__(self, home: Home, sock: socket.socket) -> None:
        self.home = home
        self.sock = sock
        self.spare: tuple[int, int] | None = None      # (pid, write end of its assignment pipe)
        self.children: dict[int, str] = {}
        self.pid = os.getpid()

    def serve(self) -> None:
        _linux.die_with_parent(signal.SIGTERM)
        sig_r, sig_w = os.pipe()
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        parent = os.getppid()
        # SIGTERM counts only once the server is gone (our death signal): a process group may
        # get SIGTERM at once, and the server still needs us to report its workers' exits.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0) if os.getppid() != parent else None)
        wit.signatures()     # parse the WIT once, here, for every child
        gc.collect()
        gc.freeze()          # keep the collector from touching (and so copying) shared pages in children
        self._fork_spare()
        while True:
            ready, _, _ = select.select([self.sock, sig_r], [], [])
            if sig_r in ready:
                os.read(sig_r, 4096)
                self._reap()
            if self.sock in ready:
                data = self.sock.recv(1 << 16)
                if not data:
                    return          # the server is gone
                self._handle(orjson.loads(data))

    def _handle(self, msg: dict) -> None:
        if msg.get("op") != "spawn":
            log.warning("zygote: unknown request %r", msg)
            return
        if self.spare is None:
            self._fork_spare()
        assert self.spare is not None
        pid, w = self.spare
        self.spare = None
        try:
            os.write(w, orjson.dumps(msg))
        except OSError as e:       # the spare died: make another and try once more
            log.warning("zygote: spare %d was gone (%s)", pid, e)
            os.close(w)
            self._fork_spare()
            assert self.spare is not None
            pid, w = self.spare
            self.spare = None
            os.write(w, orjson.dumps(msg))
        os.close(w)
        self.children[pid] = msg["actor"]
        self._report({"op": "spawned", "actor": msg["actor"], "pid": pid})
        self._fork_spare()

    def _fork_spare(self) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            code = 1
            try:
                code = _spare(self.home, r, self.pid)
            except BaseException:
                log.exception("worker crashed")
            finally:
                os._exit(code)
        os.close(r)
        self.spare = (pid, w)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare[0]:
                os.close(self.spare[1])
                self.spare = None
                self._fork_spare()
                continue
            self.children.pop(pid, None)
            self._report({"op": "exited", "pid": pid, "status": status})

    def _report(self, msg: dict) -> None:
        self.sock.send(orjson.dumps(msg))


def confine(spec: dict) -> None:
    """What a worker does to itself before any actor code runs, in this order: join its
    cgroups (as root), lower its data rlimit (when there is no cgroup), harden (no core
    dumps, bounded descriptors, umask 077, no new privileges), then drop to the server's
    --user. Each step is documented in docs/isolation.md with what it does not give."""
    if spec.get("cgroup_procs") and not _linux.join_cgroups(spec["cgroup_procs"]):
        log.warning("worker %d: could not join its cgroup; running without its limits", os.getpid())
    if spec.get("data_limit"):
        _linux.lower_limit(resource.RLIMIT_DATA, spec["data_limit"])
    _linux.harden(spec.get("nofile", 1024))
    if spec.get("user"):
        uid, gid = spec["user"]
        _linux.become(uid, gid)


def _spare(home: Home, assignment_fd: int, zygote: int) -> int:
    """A forked child: get ready, wait for an actor, become it."""
    _linux.die_with_parent(signal.SIGTERM, parent=zygote)
    _linux.close_fds_except(assignment_fd)
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    ctx = zmq.Context()
    data = b""
    while chunk := os.read(assignment_fd, 1 << 16):
        data += chunk
    os.close(assignment_fd)
    if not data:
        return 0            # the zygote went away before giving us work
    job = orjson.loads(data)
    actor_id, name = job["actor"], job["name"]
    confine(job.get("confine") or {})
    setproctitle.setproctitle(f"python -m worker --actor {actor_id} --name {name} --home {home.root}")
    try:
        return actor.main(ctx, home, actor_id, name)
    finally:
        # last words to the server are worth a moment, unless it is gone (we are orphaned)
        ctx.destroy(linger=1000 if os.getppid() == zygote else 0)

"""The fork server: imports everything a worker needs, compiles no actor, forks one process per actor.

Starting a fresh interpreter and importing wasmtime costs ~60 ms; forking this process
costs ~3 ms. So the server starts one zygote, and each actor is a fork of it. The zygote
keeps *spare* children already forked, with their ZeroMQ context made and their sockets
connected, each waiting on a socket for its assignment; a spawn hands a spare an actor, and the
spares are topped up a moment later, off the spawn's path. A spare topped up rehearses an
actor's start while it waits (``worker.rehearsal``), so that its own start is not slowed by
its first touch of the pages it shares with the zygote. wasmtime's compile thread pool
deadlocks the children of a process it ran in, so the zygote compiles only the rehearsal's
tiny actor, on its one thread; it makes the engines and deserializes the components spawned
lately, which the spares forked after that inherit (``worker.preload``).

Each spare makes its own cgroup (``w-<pid>`` under each ``--cgroup`` parent) and moves itself
in while it waits: moving a process costs an RCU grace period, which would otherwise be
paid during the spawn. The server writes the actor's limits into that group when it learns
the pid, before it answers the worker's hello, so no actor code runs unlimited.

The zygote is the workers' parent: it reaps them, removes each one's inbox socket, and reports
each exit status to the server over a SOCK_SEQPACKET socket (one JSON message per packet). It dies with the
server (PR_SET_PDEATHSIG), and its workers die with it, after flushing their events.

With ``--sandbox`` (``worker.sandbox``), the zygote first moves into a network namespace of its
own, and each worker confines itself before it opens its sockets (a spare then waits with no
sockets: Landlock binds only threads started after it). Over its assignment socket, a
worker hands back the listener of its seccomp filter; the zygote watches it
(``worker.violations``), kills a worker that makes a fatal call, and names the call in the
worker's exit report (``"seccomp"``).

Messages, server -> zygote: ``{"op": "spawn", "actor", "name", "component", "fuel", "confine"}``
(``confine``: see below; ``component`` and ``fuel`` let the worker load its component while it
asks the server and the chain for the rest), ``{"op": "ping"}`` (is it serving yet?).
Zygote -> server: ``{"op": "spawned", "actor", "pid"}``, ``{"op": "exited", "pid", "status", "seccomp"?}``,
``{"op": "pong"}``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import resource
import select
import signal
import socket
import sys
import time
from pathlib import Path

import orjson
import setproctitle
import zmq

from theater import _linux
from theater.paths import Home, wasmtime_version

from . import actor, crossing, handlers, rehearsal, wit
from .loop import Sockets
from .preload import Preloaded
from .sandbox import Sandbox, SandboxError
from .violations import Violations

log = logging.getLogger("theater.zygote")

# Spares kept ready: two, so that a spawn finds one while the other is being replaced.
SPARES = 2
# After a spare is handed out, its replacement is forked this much later: on two cores a
# fork competes with the actor that is starting.
SPARE_DELAY = 0.015
# How native code crashes: a spare that dies of one before it is needed stops the rehearsals.
CRASHES = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT})


class Zygote:
    def __init__(self, home: Home, sock: socket.socket, cgroups: list[str], layers: list[str] | None = None,
                 seccomp_log: bool = False) -> None:
        self.home = home
        self.sock = sock
        self.cgroups = cgroups          # where each spare makes its own cgroup (none: no cgroups)
        self.layers = layers or []      # the sandbox's layers the server asked for (theater.sandbox)
        self.seccomp_log = seccomp_log
        self.sandbox: Sandbox | None = None
        self.spares: list[tuple[int, socket.socket]] = []    # (pid, our end of its assignment socket)
        self.channels: dict[int, tuple[int, socket.socket]] = {}   # fd -> (worker, socket) until it hands over
        self.violations = Violations(seccomp_log)
        self.poller = select.poll()
        self.pid = os.getpid()
        self.spare_due: float | None = None
        self.preload = Preloaded(home)
        self.stage: rehearsal.Stage | None = None

    def serve(self) -> None:
        _linux.die_with_parent(signal.SIGTERM)
        sig_r, sig_w = os.pipe()
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)     # the server's: it reopens its log (workers inherit this)
        parent = os.getppid()
        # SIGTERM counts only once the server is gone (our death signal): a process group may
        # get SIGTERM at once, and the server still needs us to report its workers' exits.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0) if os.getppid() != parent else None)
        wit.signatures()     # parse the WIT once, here, for every child
        crossing.warm()      # and build its functions' codecs
        # inboxes of workers gone with a previous fork server (they die with it)
        for stale in (self.home.run / "w").glob("*.sock"):
            stale.unlink(missing_ok=True)
        wasmtime_version()   # and read the package metadata (a child may run as a user who cannot)
        # every handler module (and what it imports) now: a worker running as --user may not
        # be able to read the interpreter's files, and it would import them after the drop
        handlers.load()
        engine = self.preload.engine(False)      # the engine most actors use, made once for all
        try:
            self.stage = rehearsal.prepare(engine)
        except Exception:        # spares then start without a rehearsal: slower, not wrong
            log.exception("zygote: cannot prepare the spares' rehearsal")
        if self.layers:      # before the first fork: every worker inherits the network namespace
            self.sandbox = Sandbox.start(self.layers, self.seccomp_log, self.home)
        gc.collect()
        gc.freeze()          # keep the collector from touching (and so copying) shared pages in children
        self._top_up()
        for fd in (self.sock.fileno(), sig_r):
            self.poller.register(fd, select.POLLIN)
        while True:
            wait = None if self.spare_due is None else max(0.0, self.spare_due - time.monotonic()) * 1000
            ready = {fd for fd, _ in self.poller.poll(wait)}
            if self.spare_due is not None and time.monotonic() >= self.spare_due:
                self._top_up()
            for fd in ready - {self.sock.fileno(), sig_r}:
                if fd in self.channels:
                    self._handed_over(fd)
                elif fd in self.violations.listeners:
                    self.violations.read(fd)
                    if fd not in self.violations.listeners:
                        self.poller.unregister(fd)
            if sig_r in ready:
                os.read(sig_r, 4096)
                self._reap()
            if self.sock.fileno() in ready:
                data = self.sock.recv(1 << 16)
                if not data:
                    return          # the server is gone
                self._handle(orjson.loads(data))

    def _handle(self, msg: dict) -> None:
        if msg.get("op") == "ping":
            self._report({"op": "pong"})
            return
        if msg.get("op") != "spawn":
            log.warning("zygote: unknown request %r", msg)
            return
        while True:
            if not self.spares:
                self._fork_spare(rehearse=False)     # its actor waits: no time for a rehearsal
            pid, chan = self.spares.pop(0)
            try:
                chan.send(orjson.dumps(msg))
            except OSError as e:       # that spare died: take (or make) another
                log.warning("zygote: spare %d was gone (%s)", pid, e)
                chan.close()
                continue
            if self.sandbox is not None and self.sandbox.filters:
                self.channels[chan.fileno()] = (pid, chan)     # its seccomp listener comes back on it
                self.poller.register(chan, select.POLLIN)
            else:
                chan.close()
            break
        self._report({"op": "spawned", "actor": msg["actor"], "pid": pid})
        self.preload.want(msg["component"], bool(msg.get("fuel")))
        # the next spare is forked a moment later, not now: on two cores a fork competes with the
        # actor that is starting; a spawn arriving before then forks one at once
        self.spare_due = time.monotonic() + SPARE_DELAY

    def _top_up(self) -> None:
        self.spare_due = None
        self.preload.load_wanted()      # before the fork: the new spares inherit it
        while len(self.spares) < SPARES:
            self._fork_spare()

    def _fork_spare(self, rehearse: bool = True) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            code = 1
            try:
                code = _spare(self.home, theirs, self.pid, self.cgroups, self.sandbox, self.preload,
                              self.stage if rehearse else None)
            except BaseException:
                log.exception("worker crashed")
            finally:
                os._exit(code)
        theirs.close()
        self.spares.append((pid, ours))

    def _handed_over(self, fd: int) -> None:
        """A worker's seccomp listener arrived (or its channel closed without one)."""
        pid, chan = self.channels.pop(fd)
        self.poller.unregister(fd)
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(chan, 64, 1)
        except OSError:
            fds = []
        chan.close()
        for listener in fds:
            self.violations.watch(listener, pid)
            self.poller.register(listener, select.POLLIN)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            # its inbox: nobody else removes it (a worker killed or trapped does not unbind), and
            # restart storms left thousands (issue 16, finding 12)
            self.home.worker_socket(pid).unlink(missing_ok=True)
            for fd in [fd for fd, owner in self.violations.listeners.items() if owner == pid]:
                self.poller.unregister(fd)
            call = self.violations.ended(pid)
            spare = next((sp for sp in self.spares if sp[0] == pid), None)
            if spare is not None:
                spare[1].close()
                self.spares.remove(spare)
                self.spare_due = time.monotonic() + SPARE_DELAY
                self._crashed_spare(pid, status)
                continue
            for fd, (owner, chan) in list(self.channels.items()):
                if owner == pid:
                    self.poller.unregister(fd)
                    chan.close()
                    del self.channels[fd]
            self._report({"op": "exited", "pid": pid, "status": status, **({"seccomp": call} if call else {})})

    def _crashed_spare(self, pid: int, status: int) -> None:
        """A spare that crashed before it was needed may have crashed in its rehearsal (native
        code: no exception to catch), and so would every spare after it: they stop rehearsing."""
        if self.stage is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) in CRASHES:
            log.error("zygote: spare %d crashed (%s) before it was needed; spares no longer rehearse",
                      pid, signal.Signals(os.WTERMSIG(status)).name)
            self.stage = None

    def _report(self, msg: dict) -> None:
        # the server may be gone (it can stop before our start-up ends): the next read ends us
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.send(orjson.dumps(msg))


def confine(spec: dict, inbox: Path) -> None:
    """What a worker does to itself before any actor code runs, in this order: lower its data
    rlimit (when there is no cgroup), harden (no core dumps, bounded descriptors, umask 077,
    no new privileges), then drop to the server's --user, handing it the inbox socket the
    spare bound as root (peers running as that user must be able to connect). Its cgroup it
    joined as a spare; the server sets that group's limits before it answers the hello. Each
    step is documented in docs/isolation.md with what it does not give."""
    if spec.get("data_limit"):
        _linux.lower_limit(resource.RLIMIT_DATA, spec["data_limit"])
    _linux.harden(spec.get("nofile", 1024))
    if spec.get("user"):
        uid, gid = spec["user"]
        os.chown(inbox, uid, gid)
        _linux.become(uid, gid)


def _spare(home: Home, channel: socket.socket, zygote: int, cgroups: list[str], box: Sandbox | None,
           preload: Preloaded, stage: rehearsal.Stage | None) -> int:
    """A forked child: get ready (rehearse on ``stage``: see ``worker.rehearsal``), wait for an actor,
    become it."""
    _linux.die_with_parent(signal.SIGTERM, parent=zygote)
    if cgroups and not _linux.join_new_cgroups(cgroups, f"w-{os.getpid()}"):
        log.warning("worker %d: could not make or join its cgroup; it will run without its limits", os.getpid())
    _linux.close_fds_except(channel.fileno(), *preload.fds())
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    ctx = zmq.Context()
    # unsandboxed, a spare connects its sockets while it waits; sandboxed, only once confined
    sockets = Sockets.open(ctx, home) if box is None else None
    if stage is not None:
        rehearsal.rehearse(stage)
    data = channel.recv(1 << 16)
    if not data:
        return 0            # the zygote went away before giving us work
    job = orjson.loads(data)
    actor_id, name, spec = job["actor"], job["name"], job.get("confine") or {}
    fuel = bool(job.get("fuel"))
    loaded = preload.take(job["component"], fuel)
    setproctitle.setproctitle(f"python -m worker --actor {actor_id} --name {name} --home {home.root}")
    if box is None:
        channel.close()
        inbox = home.worker_socket(os.getpid())
        last = lambda: confine(spec, inbox)     # noqa: E731 - as its first act once its requests are out
    else:
        try:
            box.enter(home, spec)
        except (SandboxError, OSError) as e:
            log.error("worker %d (actor %s): cannot confine itself: %s", os.getpid(), actor_id, e)
            return actor.EXIT_START_FAILED
        last = lambda: box.seal(channel, spec)   # noqa: E731 - before any actor code is loaded
    if sockets is None:
        sockets = Sockets.open(ctx, home)
    try:
        return actor.main(ctx, home, sockets, actor_id, name, job["component"], fuel, last, preload.engine(fuel),
                          loaded)
    finally:
        # last words to the server are worth a moment, unless it is gone (we are orphaned)
        ctx.destroy(linger=1000 if os.getppid() == zygote else 0)

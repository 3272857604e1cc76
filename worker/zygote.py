"""The fork server: imports everything a worker needs, compiles no actor, forks one process per actor.

Starting a fresh interpreter and importing wasmtime costs ~60 ms; forking this process
costs ~3 ms. So the server starts one zygote, and each actor is a fork of it. The zygote
keeps *spare* children already forked (``worker.spare``: what one does), each waiting on a
socket for its assignment; a spawn hands a spare an actor, and the spares are topped up a moment
later, off the spawn's path (at once when it took the last spare of its kind, so that a burst of
spawns never waits for a fork). A spare topped up rehearses an actor's start while it waits
(``worker.rehearsal``), so that its own start is not slowed by its first touch of the pages it
shares with the zygote. wasmtime's compile thread pool
deadlocks the children of a process it ran in, so the zygote compiles only the rehearsal's
tiny actor, on its one thread; it makes the engines and deserializes the components spawned
lately, which the spares forked after that inherit (``worker.preload``).

Each spare makes its own cgroup (``w-<pid>`` under each ``--cgroup`` parent) and moves itself
in while it waits: moving a process costs an RCU grace period, which would otherwise be
paid during the spawn. The server writes the actor's limits into that group when it learns
the pid, before it answers the worker's hello, so no actor code runs unlimited.

The zygote is the workers' parent: it reaps them, removes each one's inbox socket, and reports
each exit status to the server over a SOCK_SEQPACKET socket (one JSON message per packet). It dies with the
server (PR_SET_PDEATHSIG, SIGKILL: even stopped), and its workers die with it, after flushing their events.
It is also the subreaper of what they start (``theater._linux.adopt_orphans``): a worker killed (its
time limit, the OOM killer, kill -9) while a granted program ran, or a job it put in a session of its
own, would leave them to init, and nothing an actor starts may outlive it. Once a worker is reaped,
the zygote kills every child it did not fork, with its group, round after round as each one's
children come to it in turn, and reaps them: they are no workers, and their exits are not reported.

With ``--sandbox`` (``worker.sandbox``), the zygote first moves into a network namespace of its
own, and each worker confines itself before it opens its sockets. Once an actor with the usual
confinement has started (``spare.ahead_for``), the spares confine themselves for it while they
wait, and only such actors get them; once an actor with a wider view was seen, one of the
spares confines itself only once assigned, for such actors. Over its assignment socket, a
worker (or a spare confined ahead) hands back the listener of its seccomp filter; the zygote
watches it (``worker.violations``), kills a worker that makes a fatal call, and names the call
in the worker's exit report (``"seccomp"``).

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
import select
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson

from theater import _linux
from theater.paths import Home, wasmtime_version

from . import crossing, handlers, rehearsal, spare, wit
from .preload import Preloaded
from .sandbox import Sandbox
from .violations import Violations

log = logging.getLogger("theater.zygote")

# Spares kept ready: three, so that back-to-back spawns (one every ~20 ms on two cores) find one
# ready while others are replaced: a spare takes 15-35 ms to get ready (its cgroup move, its
# rehearsal, its confinement ahead).
SPARES = 3
# After a spare is handed out, its replacement is forked this much later (not postponed by the
# spawns that follow): on two cores a fork competes with the actor that is starting.
SPARE_DELAY = 0.015
# How native code crashes: a spare that dies of one before it is needed stops the rehearsals.
CRASHES = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT})


@dataclass
class Spare:
    pid: int
    chan: socket.socket                 # our end of its assignment socket
    ahead: dict[str, Any] | None = None     # the confinement it put up while waiting (spare.ahead_for)
    assigned: bool = False


class Zygote:
    def __init__(self, home: Home, sock: socket.socket, cgroups: list[str], layers: list[str] | None = None,
                 seccomp_log: bool = False) -> None:
        self.home = home
        self.sock = sock
        self.cgroups = cgroups          # where each spare makes its own cgroup (none: no cgroups)
        self.layers = layers or []      # the sandbox's layers the server asked for (theater.sandbox)
        self.seccomp_log = seccomp_log
        self.sandbox: Sandbox | None = None
        self.spares: list[Spare] = []
        self.channels: dict[int, Spare] = {}    # fd -> spare or worker, until it hands its seccomp listener over
        self.usual: dict[str, Any] | None = None    # sandboxed: the confinement spares put up ahead
        self.wide = False           # sandboxed: an actor with a view wider than the usual one was seen
        self.ahead_off = False      # a spare confined ahead died before it was needed: no more of them
        self.retired: set[int] = set()      # spares let go unused: their exits are not reported
        self.dead: dict[int, Spare] = {}    # spares found dead when assigned, not reaped yet
        self.forked: set[int] = set()       # spares and workers not reaped yet: any other child is an orphan
        self.violations = Violations(seccomp_log)
        self.poller = select.poll()
        self.pid = os.getpid()
        self.spare_due: float | None = None
        self.preload = Preloaded(home)
        self.stage: rehearsal.Stage | None = None

    def serve(self) -> None:
        # SIGKILL: a fork server stopped (SIGSTOP, a debugger) when the server dies must die too,
        # or its workers, which die with it, would outlive the server
        _linux.die_with_parent(signal.SIGKILL)
        sig_r, sig_w = os.pipe()
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)     # the server's: it reopens its log (workers inherit this)
        parent = os.getppid()
        # SIGTERM counts only once the server is gone: a process group may get SIGTERM at
        # once, and the server still needs us to report its workers' exits.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0) if os.getppid() != parent else None)
        wit.signatures()     # parse the WIT once, here, for every child
        crossing.warm()      # and build its functions' codecs
        # inboxes of workers gone with a previous fork server (they die with it), and whatever
        # else an older version let workers make there
        for stale in (self.home.run / "w").iterdir():
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
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
        _linux.adopt_orphans()      # before the first fork: what a worker killed leaves running comes to us
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
        want = self._learn(msg.get("confine") or {})
        while True:
            s = self._take(want)
            try:
                s.chan.send(orjson.dumps(msg))
            except OSError as e:       # that spare died: take (or make) another
                log.warning("zygote: spare %d was gone (%s)", s.pid, e)
                self._forget(s)
                self.dead[s.pid] = s       # _reap sees why
                continue
            s.assigned = True
            if s.chan.fileno() in self.channels:
                break                  # its seccomp listener is still to come: _handed_over closes it
            if s.ahead is None and self.sandbox is not None and self.sandbox.filters:
                self.channels[s.chan.fileno()] = s     # its seccomp listener comes back on it
                self.poller.register(s.chan, select.POLLIN)
            else:
                s.chan.close()
            break
        log.debug("zygote: actor %s in spare %d%s", msg["actor"], s.pid, " (confined ahead)" if s.ahead else "")
        self._report({"op": "spawned", "actor": msg["actor"], "pid": s.pid})
        self.preload.want(msg["component"], bool(msg.get("fuel")))
        # the next spare is forked a moment later, not now: on two cores a fork competes with the
        # actor that is starting. Not later than that, though (in a burst of spawns, postponing
        # it at each one left every fourth with no spare), and at once when this took the last
        # of its kind (the next such spawn would wait for a fork)
        last_of_its_kind = not any(x.ahead == s.ahead for x in self._usable())
        self._top_up_within(0.0 if last_of_its_kind else SPARE_DELAY)

    def _learn(self, confine: dict[str, Any]) -> dict[str, Any] | None:
        """The confinement of a spare confined ahead that may take this actor (sandboxed only).
        The first actor with the usual view teaches the fork server that confinement."""
        if self.sandbox is None or self.ahead_off:
            return None
        want = spare.ahead_for(confine)
        if want is None:
            self.wide = True
        else:
            self.usual = want
        return want

    def _take(self, want: dict[str, Any] | None) -> Spare:
        """A spare confined ahead for ``want`` (one that is ready first: it has handed over its
        seccomp listener), else one that confines itself once assigned (else a new one: its
        actor waits, so it does not rehearse). Never one just killed for a fatal call."""
        alive = self._usable()
        ahead = sorted((s for s in alive if want is not None and s.ahead == want),
                       key=lambda s: s.chan.fileno() in self.channels)
        s = next(iter(ahead), None) or next((s for s in alive if s.ahead is None), None)
        if s is None:
            log.info("zygote: no spare left for this actor's confinement: its spawn waits for one forked now")
            s = self._fork_spare(rehearse=False)
        self.spares.remove(s)
        return s

    def _usable(self) -> list[Spare]:
        """The spares that may take an actor: not those being killed for a fatal call."""
        return [s for s in self.spares if s.pid not in self.violations.calls]

    def _top_up_within(self, seconds: float) -> None:
        """Tops the spares up ``seconds`` from now, or sooner if that was due already."""
        due = time.monotonic() + seconds
        self.spare_due = due if self.spare_due is None else min(self.spare_due, due)

    def _top_up(self) -> None:
        """Forks the spares missing: ``SPARES`` of them, confined ahead once the usual confinement
        is known, but for one that is not once actors with a wider view were seen."""
        self.spare_due = None
        self.preload.load_wanted()      # before the fork: the new spares inherit it
        wanted = [self.usual] * (SPARES - 1) + [None if self.wide else self.usual]
        surplus = []
        for s in self.spares:
            if s.ahead in wanted:
                wanted.remove(s.ahead)
            else:
                surplus.append(s)
        for s in surplus:           # forked before the usual confinement was known (or a wide actor seen)
            self.retired.add(s.pid)
            self._forget(s)         # it reads the end of its channel and exits
        for ahead in wanted:
            self._fork_spare(ahead=ahead)

    def _fork_spare(self, rehearse: bool = True, ahead: dict[str, Any] | None = None) -> Spare:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            code = 1
            try:
                code = spare.run(self.home, theirs, self.pid, self.cgroups, self.sandbox, self.preload,
                                 self.stage if rehearse else None, ahead)
            except SystemExit:      # SIGTERM before it set up its own handling (the server stops): not a crash
                code = 0
            except BaseException:
                log.exception("worker crashed")
            finally:
                os._exit(code)
        theirs.close()
        self.forked.add(pid)
        log.debug("zygote: spare %d forked%s", pid, " to confine itself ahead" if ahead is not None else "")
        s = Spare(pid, ours, ahead)
        self.spares.append(s)
        if ahead is not None and self.sandbox is not None and self.sandbox.filters:
            self.channels[ours.fileno()] = s         # it seals itself, then hands its listener over
            self.poller.register(ours, select.POLLIN)
        return s

    def _handed_over(self, fd: int) -> None:
        """A seccomp listener arrived (or its channel closed without one): from a worker, or from a
        spare confined ahead, whose channel stays open for its assignment."""
        s = self.channels.pop(fd)
        self.poller.unregister(fd)
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(s.chan, 64, 1)
        except OSError:
            fds = []
        if s.assigned:
            s.chan.close()
        for listener in fds:
            self.violations.watch(listener, s.pid)
            self.poller.register(listener, select.POLLIN)

    def _forget(self, s: Spare) -> None:
        """Closes a spare's or a worker's channel and stops watching it."""
        if s in self.spares:
            self.spares.remove(s)
        if self.channels.get(fd := s.chan.fileno()) is s:
            self.poller.unregister(fd)
            del self.channels[fd]
        s.chan.close()

    def _reap(self) -> None:
        reaped = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped = True
            if pid not in self.forked:
                continue        # an orphan (killed below, or a zombie when it came to us): no worker
            self.forked.discard(pid)
            # its inbox: nobody else removes it (a worker killed or trapped does not unbind), and
            # restart storms left thousands (issue 16, finding 12)
            self.home.worker_socket(pid).unlink(missing_ok=True)
            for fd in [fd for fd, owner in self.violations.listeners.items() if owner == pid]:
                self.poller.unregister(fd)
            call = self.violations.ended(pid)
            lost = next((s for s in self.spares if s.pid == pid), None) or self.dead.pop(pid, None)
            for s in [s for s in self.channels.values() if s.pid == pid]:
                self._forget(s)
            if pid in self.retired or lost is not None:
                self._remove_groups(pid)        # the server never knew of it: nobody else does
            if pid in self.retired:
                self.retired.discard(pid)
                continue
            if lost is not None:
                self._forget(lost)
                self._top_up_within(SPARE_DELAY)
                self._lost_spare(lost, status, call)
                continue
            log.debug("zygote: worker %d exited (%s)", pid, _status(status))
            self._report({"op": "exited", "pid": pid, "status": status, **({"seccomp": call} if call else {})})
        if reaped and (orphans := _linux.kill_children(self.forked)):
            # what an ended worker (or an orphan killed last round) left running: their children
            # come to us as they die, and go at the next reap
            log.info("zygote: killed %s, left running by a worker that ended", ", ".join(map(str, sorted(orphans))))

    def _remove_groups(self, pid: int) -> None:
        """A spare's own cgroups (made by itself, empty now), best effort: what is left goes with
        the server's parent group when it stops."""
        for parent in self.cgroups:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(parent, f"w-{pid}"))

    def _lost_spare(self, s: Spare, status: int, call: str | None) -> None:
        """A spare died before it was needed. If it crashed (native code: no exception to catch),
        its rehearsal may be why, and would be in every spare: they stop rehearsing. If it was
        confined ahead and died any way but a clean exit, that may be why: they stop doing that."""
        signalled = os.WIFSIGNALED(status)
        if self.stage is not None and signalled and os.WTERMSIG(status) in CRASHES:
            log.error("zygote: spare %d crashed (%s) before it was needed; spares no longer rehearse",
                      s.pid, signal.Signals(os.WTERMSIG(status)).name)
            self.stage = None
        if s.ahead is not None and self.usual is not None and (signalled or os.WEXITSTATUS(status) or call):
            log.error("zygote: spare %d, confined ahead, died before it was needed (%s); spares no longer "
                      "confine themselves ahead", s.pid, call or _status(status))
            self.usual, self.ahead_off = None, True

    def _report(self, msg: dict) -> None:
        # the server may be gone (it can stop before our start-up ends): the next read ends us
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.send(orjson.dumps(msg))


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return f"exit status {os.WEXITSTATUS(status)}"

"""theater-server: one loop that owns every socket, the registry and the helper processes.

Sockets:
  management  ROUTER  clients (the CLI)                      run/theater.sock, or --listen tcp://... + CURVE
  control     ROUTER  workers (attributed by pid: gate.py)    run/control.sock, ROUTER_MANDATORY
  chain       DEALER  the chain process (queries, records)   run/chain.sock
  events      SUB     the chain's published events, relayed to `events --follow` clients
  gateway     DEALER  the gateway process (grants)           run/gateway.sock (supervisor/gateway)

Everything happens in this one thread: a message, a process exit (the fork server's
report), a helper's output, a signal (SIGHUP: reopen the log) or a timer is handled to
completion before the next. Work that must wait (a worker's answer, a chain query, a process
to exit) is parked in ``pending`` or behind a timer, never waited for in place. What the
outside hears (systemd, metrics) is in ``health``; the other threads (``security``,
``exporter``) never touch this loop's state, nor does the console's process (a client of
``mgmt``, like the CLI).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import zmq

from theater import _linux, keys, peercred, protocol
from theater import manifest as manifests
from theater.config import ServerConfig
from theater.errors import Refused, TheaterError, UsageError
from theater.manifest import Backoff
from theater.paths import Home
from theater.sandbox import Layers

from . import compiled, keepalive, sharing
from . import limits as limits_
from .callers import Callers
from .compiles import Compiles
from .console import Console
from .directory import Directory
from .gate import Gate
from .gateway.link import GatewayLink
from .health import Health
from .inbox import Inbox
from .launch import Child, ForkServer, Outputs, unlink_socket
from .logs import LogSink
from .metrics import Metrics
from .outbox import Outbox
from .persist import SavedActors
from .registry import Registry
from .relay import Relay
from .restart import next_backoff
from .room import Room
from .sdnotify import Notifier
from .security import secure_listener
from .services import Services
from .supervision import Supervision

log = logging.getLogger("theater.server")

# The chain process is restarted after dying: after 0.2 s, doubling with each death that
# follows a short run (a crash loop, say on a full disk), up to 30 s.
CHAIN_BACKOFF = Backoff(min=0.2, max=30.0, jitter=0.0)
# How long the server waits for the chain process's first answer at start.
CHAIN_START_TIMEOUT = 15.0
# ... and, as long as it works (CPU, disk: a large chains.db's migration), at most this long.
CHAIN_START_MOST = 1800.0
# How long a graceful server stop waits for the chain and fork server to exit.
HELPER_STOP_TIMEOUT = 5.0
TRIM_EVERY = 60.0       # seconds between returns of the heap's free pages (a soak's RSS creep: -30 to -50%)


class Server:
    def __init__(self, home: Home, listen: str | None, log_level: str, log: LogSink,
                 restore: bool = True, config: ServerConfig | None = None,
                 limits: limits_.Controller | None = None, user: tuple[int, int] | None = None,
                 notifier: Notifier | None = None, metrics: bool = False, curve: bool = False,
                 console: Console | None = None, keep_actors: bool = True, sandbox: Layers | None = None,
                 seccomp_log: bool = False) -> None:
        self.home = home
        self.restore = restore
        self.config = config or ServerConfig()
        self.limits = limits or limits_.RlimitController(reason="not configured")
        self.user = list(user) if user else None
        self.listen = listen or home.management_endpoint
        self.curve = curve
        self.log = log
        self.ctx = zmq.Context()
        self.registry = Registry()
        self.outbox = Outbox(self.registry)
        self.stopping = False
        self.log_args = log_args = ["--log-level", log_level, *(["--log-journal"] if log.journal else [])]
        self.sandbox = sandbox or Layers()
        self.forkserver = ForkServer(home, log_args, self.limits.worker_parents(),
                                     self.sandbox.args() + (["--seccomp-log"] if seccomp_log else []))
        self.callers = Callers(lambda: self.forkserver.pid, self.limits.worker_parents())
        self.chain_proc = Child("chain", home, ["--parent", str(os.getpid()), *log_args,
                                                "--durability", self.config.durability])
        self._chain_attempt, self._chain_started, self._chain_restart_due = 0, time.monotonic(), False
        self._trim_at = time.monotonic() + TRIM_EVERY
        self.gate = Gate(self.registry, self.outbox.tell_chain, self.outbox.to_worker)
        self.gateway = GatewayLink(home, self.ctx, log_args, self.config, self.outbox.later,
                                   worker_group=user[1] if user else None)
        self.registry.pid_watchers.append(self.gateway.pid_changed)
        self.saved = SavedActors(home.actors, keep=keep_actors)
        self.directory = Directory(self.registry, self.outbox)
        self.compiles = Compiles(home, self.config.compile, str(self.config.source), self.limits, self.outbox.later,
                                 time.monotonic, user)
        self.supervision = Supervision(self.registry, self.outbox, self.forkserver, self.limits, self.saved,
                                       self.directory, self.config, self.compiles, user=user)
        self.room = Room(self.registry, self.config)
        self.metrics = Metrics(self.registry, self.directory, self.outbox, self.room) if metrics else None
        self.health = Health(home, self.registry, self.outbox, notifier or Notifier(), self.metrics)
        self.console = console          # the web console's process: a client of self.mgmt

    @staticmethod
    def _guarded(fn: Callable[..., None], *args: Any) -> None:
        """A bug in one handler is logged; the server and every other actor keep going."""
        try:
            fn(*args)
        except Exception:
            log.exception("theater-server: internal error (continuing)")

    # ---- start and stop ---------------------------------------------------------------------

    def open(self) -> None:
        """Starts the chain process and the fork server, then opens the sockets."""
        self.home.ensure()
        keys.load_or_create(self.home)
        unlink_socket(self.home.run / "control.sock")   # the chain process clears its own
        os.chmod(self.home.keys, 0o700)
        os.chmod(self.home.run, 0o700)
        os.chmod(self.home.run / "w", 0o700)
        compiled.settle(self.home)
        if self.user:
            sharing.share_home(self.home, self.user[1])
        self.chain_proc.start()
        self.chain = self._dealer(self.home.chain_endpoint, b"s" + os.urandom(15))
        self.events = self.ctx.socket(zmq.SUB)
        self.events.setsockopt(zmq.RCVHWM, 100_000)
        self.events.connect(self.home.events_endpoint)
        self.relay = Relay(self.outbox, self.events)
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.ROUTER_MANDATORY, 1)      # no ROUTER_HANDOVER: ids cannot be taken over
        self.control.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        self.control.bind(self.home.control_endpoint)
        if self.user:
            sharing.share_socket(self.home.run / "control.sock", self.user[1])
        self._wait_for_chain()
        if self.user:
            sharing.share_socket(self.home.run / "chain.sock", self.user[1])
        self.forkserver.start()
        self.forkserver.ping()
        self.mgmt = self.ctx.socket(zmq.ROUTER)
        self.mgmt.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.mgmt.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        self.mgmt.setsockopt(zmq.SNDHWM, 100_000)
        self.outbox.clients, self.outbox.workers, self.outbox.chain = self.mgmt, self.control, self.chain
        self.services = Services(self.home, self.registry, self.supervision, self.outbox, self.relay, self.limits,
                                 self.room, self.listen, self.public_key, self.gateway, self.directory)
        self.inbox = Inbox(self.services, self.directory, self.gate, self.callers.note)
        self.gate.deliver = self.inbox.worker_message
        if self.console is not None:    # before any CURVE setting: the console has no keys
            unlink_socket(self.home.console_socket)
            self.mgmt.bind(self.home.console_endpoint)
            os.chmod(self.home.console_socket, 0o600)
        self.zap = secure_listener(self.mgmt, self.home, self.listen, self.curve)
        if self.listen.startswith("ipc://"):
            unlink_socket(self.home.management_socket)
        try:
            self.mgmt.bind(self.listen)
        except zmq.ZMQError as e:
            raise UsageError(f"--listen {self.listen}: cannot listen there: {e.strerror}") from None
        if self.listen.startswith("ipc://"):
            os.chmod(self.listen.removeprefix("ipc://"), 0o600)
        else:                          # the port actually bound (PORT 0 or * picks a free one)
            self.listen = self.services.listen = self.mgmt.getsockopt(zmq.LAST_ENDPOINT).decode()
        if self.console is not None:
            self.console.start(self.log_args, self.outbox.later)
        if self.restore:
            self._restore()
        self.health.opened(self.listen)

    def _restore(self) -> None:
        """Brings back the top-level actors a previous server on this home was running."""
        for doc in self.saved.load():
            try:
                m = manifests.parse(doc["manifest"], doc["source"])
            except TheaterError as e:
                log.error("cannot restore actor %s: %s", doc.get("id"), e.message)
                continue
            log.info("restoring actor %s (%s)%s", doc["id"], m.name, " as it ended" if doc.get("ended") else "")
            self.supervision.start(m, doc["manifest"], doc["base"], doc["component"], doc.get("init_state"),
                                   actor_id=doc["id"], ended=doc.get("ended"))

    def _dealer(self, endpoint: str, identity: bytes) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        return sock

    def _wait_for_chain(self) -> None:
        """Waits for the chain process's first answer; if it exits first (a damaged chains.db, a
        run/chain.sock it cannot bind), fails at once with the last line it wrote. One that has not
        answered in CHAIN_START_TIMEOUT but works (CPU, disk: an upgrade's index of a large
        chains.db) is given as long again, and systemd told so, up to CHAIN_START_MOST."""
        self.chain.send_multipart(protocol.encode({"k": "query", "id": "boot", "what": "key"}))
        start = time.monotonic()
        deadline = start + CHAIN_START_TIMEOUT
        while not self.chain.poll(100):
            if (status := self.chain_proc.poll()) is not None:
                said = self.chain_proc.last_line()
                raise TheaterError(f"the chain process exited (status {status}) before it started"
                                   + (f": {said}" if said else ""))
            if (now := time.monotonic()) > deadline:
                if not self.chain_proc.working() or now - start > CHAIN_START_MOST:
                    raise TheaterError(f"the chain process did not start within {now - start:.0f}s "
                                       f"(see the server log)")
                log.warning("the chain process is still starting after %.0fs (opening chains.db); waiting", now - start)
                self.health.notifier.extend(2 * CHAIN_START_TIMEOUT, "opening chains.db")
                deadline = now + CHAIN_START_TIMEOUT
        header, _ = protocol.decode(self.chain.recv_multipart())
        self.public_key = header.get("public_key", "")

    def serve(self) -> None:
        """Runs until SIGTERM/SIGINT, then stops every actor and helper in order."""
        sig_r, sig_w = os.pipe()
        os.set_blocking(sig_r, False)
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(s, lambda *_: None)
        self.poller = poller = zmq.Poller()
        for sock in (self.mgmt, self.control, self.chain, self.events):
            poller.register(sock, zmq.POLLIN)
        self._fork_fd = self.forkserver.fileno()
        poller.register(self._fork_fd, zmq.POLLIN)
        self.outputs = Outputs(poller, self.log.relay)
        self._out_fd = self.outputs.watch(self.forkserver.output_fd())
        self._chain_out = self.outputs.watch(self.chain_proc.output_fd())
        self.gateway.outputs = self.outputs
        self.gateway.watch_output()
        if self.console is not None:
            self.console.watch_output(self.outputs)
        poller.register(sig_r, zmq.POLLIN)
        self.outbox.later(1.0, self._tick)
        self.outbox.later(keepalive.KEEPALIVE_EVERY, self._keepalive)
        log.info("theater-server serving: %s (home %s); limits: %s; at most %d live actors; sandbox: %s", self.listen,
                 self.home.root, self.limits.describe(), self.config.max_actors, self.sandbox.describe())
        for layer, why in self.sandbox.missing.items():
            log.warning("theater-server: sandbox layer %s is not in force: %s", layer, why)
        while not (self.stopping and self.supervision.idle()):
            timeout = self.outbox.run_timers(self._guarded)
            for sock, _ in poller.poll(max(0.0, min(timeout, 1.0)) * 1000):
                if sock == sig_r:
                    self._signals(sig_r)
                elif sock in self.outputs:
                    self.outputs.read(sock)
                elif sock == self._fork_fd:
                    for report in self.forkserver.reports():
                        if report["op"] == "pong":
                            self.health.forkserver_answered()
                        self._guarded(self.supervision.on_fork_report, report)
                        if report["op"] == "gone":
                            self._restart_forkserver()
                            break
                else:
                    self._drain(sock)
        self._close()

    def _signals(self, fd: int) -> None:
        try:
            got = os.read(fd, 256)
        except BlockingIOError:
            return
        if (signal.SIGTERM in got or signal.SIGINT in got) and not self.stopping:
            log.info("theater-server: stopping (%d actors)", len(self.registry))
            self.stopping = True
            self.health.stop()
            self.supervision.stop_all()
        if signal.SIGCHLD in got:
            self.compiles.reap()
            self._check_helpers()
        if signal.SIGHUP in got:
            self.log.reopen()

    def _check_helpers(self) -> None:
        status = self.chain_proc.poll()
        if status is not None and not self.stopping and not self._chain_restart_due:
            self._chain_restart_due = True          # poll() keeps answering until the restart
            delay, self._chain_attempt = next_backoff(CHAIN_BACKOFF, self._chain_attempt,
                                                      time.monotonic() - self._chain_started)
            log.error("chain process exited (status %s); restarting it in %.1fs", status, delay)
            self.outbox.later(delay, self._restart_chain)
            self.outbox.chain_lost()
        if self.forkserver.poll() is not None and not self.stopping:
            self._restart_forkserver()
        self.gateway.check(self.stopping)
        if self.console is not None:
            self.console.check(self.stopping)

    def _restart_forkserver(self) -> None:
        self.poller.unregister(self._fork_fd)
        self.outputs.unwatch(self._out_fd)
        self.forkserver.stop(0)
        if self.stopping:
            return
        log.error("worker fork server exited; restarting it")
        self.forkserver.start()
        self._fork_fd = self.forkserver.fileno()
        self.poller.register(self._fork_fd, zmq.POLLIN)
        self._out_fd = self.outputs.watch(self.forkserver.output_fd())

    def _restart_chain(self) -> None:
        self._chain_restart_due = False
        if self.chain_proc.poll() is None:
            return
        self.outputs.unwatch(self._chain_out, drain=True)
        self.chain_proc.start()
        self._chain_started = time.monotonic()
        self._chain_out = self.outputs.watch(self.chain_proc.output_fd())
        self.services.chain_error = None    # the new process says so if it cannot write either
        self.gate.rebind_all()
        for rec in self.registry:
            if rec.alive:
                self.outbox.to_worker(rec.actor_id, {"k": "chain_restarted"})
        self.outbox.chain_back()

    def _close(self) -> None:
        self.forkserver.stop(HELPER_STOP_TIMEOUT)
        self.outputs.unwatch(self._out_fd, drain=True)
        self.compiles.close()
        self.limits.close()             # after the spares, which sit in their own groups, are gone
        self.chain.send_multipart(protocol.encode({"k": "shutdown"}))
        self.chain_proc.wait(HELPER_STOP_TIMEOUT)
        self.outputs.unwatch(self._chain_out, drain=True)
        self.gateway.stop(HELPER_STOP_TIMEOUT)
        if self.listen.startswith("ipc://"):
            unlink_socket(self.home.management_socket)
        if self.zap is not None:
            self.zap.close()
        self.health.closed()
        if self.console is not None:
            self.console.close(HELPER_STOP_TIMEOUT)
            unlink_socket(self.home.console_socket)
        self.ctx.destroy(linger=0)
        log.info("theater-server stopped")

    def _refused_client(self, frames: list[zmq.Frame]) -> str | None:
        """Why a client's message is refused: its CURVE key was revoked, or it comes from an
        actor's worker (supervisor.callers); None if it is taken."""
        if self.zap is not None and self.zap.revoked(frames):
            return "this client's CURVE key was revoked (it left keys/authorized)"
        if (pid := peercred.pid(frames[0])) is not None and self.callers.worker(pid):
            log.warning("management socket: refused a request of process %d, an actor's worker (or its child)", pid)
            return "the management socket takes no requests from an actor's worker"
        return None

    def _tick(self) -> None:
        self.outbox.expire()
        if self.zap is not None:                # a revoked key's streams end as its requests do
            for client in self.zap.revoked_clients(self.relay.clients() | self.directory.clients()):
                self.relay.drop(client)
                self.directory.drop(client)
        self.supervision.check_hangs()
        self._check_helpers()
        if time.monotonic() >= self._trim_at:
            _linux.release_free_heap()
            self._trim_at = time.monotonic() + TRIM_EVERY
        self.outbox.later(1.0, self._tick)

    def _keepalive(self) -> None:
        keepalive.sweep(self.outbox, self.relay, self.directory)
        self.outbox.later(keepalive.KEEPALIVE_EVERY, self._keepalive)

    # ---- messages in --------------------------------------------------------------------------

    def _drain(self, sock: zmq.Socket) -> None:
        for _ in range(1000):          # then let the other sockets have a turn
            try:           # as Frames, they carry their sender's credentials (gate.py) or CURVE key
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=sock not in (self.control, self.mgmt))
            except zmq.Again:
                return
            if sock is self.mgmt:
                why = self._refused_client(frames)
                if why is not None:
                    self.outbox.fail(frames[0].bytes, protocol.request_id([f.bytes for f in frames[1:]]), Refused(why))
                    continue
                self._guarded(self.inbox.from_client, [f.bytes for f in frames])
            elif sock is self.control:
                self._guarded(self.inbox.from_worker, frames)
            elif sock is self.chain:
                self._guarded(self.inbox.from_chain, frames)
            else:
                self._guarded(self.relay.published, frames)

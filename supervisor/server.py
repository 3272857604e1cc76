"""theater-server: one loop that owns every socket, the registry and the helper processes.

Sockets:
  management  ROUTER  clients (the CLI)                      run/theater.sock, or --listen tcp://... + CURVE
  control     ROUTER  workers (attributed by pid: gate.py)    run/control.sock, ROUTER_MANDATORY
  chain       DEALER  the chain process (queries, records)   run/chain.sock
  events      SUB     the chain's published events, relayed to `events --follow` clients

Everything happens in this one thread: a message, a process exit (the fork server's
report), a signal or a timer is handled to completion before the next. Work that must
wait (a worker's answer, a chain query, a process to exit) is parked in ``pending`` or
behind a timer, never waited for in place.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
import zmq

from theater import keys, protocol
from theater import manifest as manifests
from theater.errors import ProtocolError, Refused, TheaterError, Timeout, from_wire
from theater.ids import new_request_id
from theater.paths import Home

from . import api, children
from . import limits as limits_
from .directory import Directory
from .gate import Gate
from .launch import Child, ForkServer, OutputRelay, unlink_socket
from .persist import SavedActors
from .registry import ActorRecord, Registry
from .relay import Relay
from .security import secure_listener
from .supervision import Supervision

log = logging.getLogger("theater.server")

# A forwarded request with no answer after this long is failed back to its client; the
# worker's own call timeout normally answers first.
PENDING_TIMEOUT = 300.0
# The chain process is restarted after dying: at once the first time, then after a delay
# that doubles with each death that follows a short run (a crash loop), up to the maximum.
CHAIN_RESTART_DELAY = 0.2
CHAIN_RESTART_MAX = 30.0
CHAIN_STABLE = 60.0         # a chain that ran this long starts the curve over
# How long a graceful server stop waits for the chain and fork server to exit.
HELPER_STOP_TIMEOUT = 5.0


@dataclass
class Pending:
    """A request forwarded to a worker or the chain, waiting for its answer."""

    client: bytes | None                       # management identity to answer, if any
    client_id: str
    actor: str | None = None                   # the worker asked, to fail it if the worker dies
    then: Callable[[dict[str, Any], list[bytes]], None] | None = None
    deadline: float = field(default_factory=lambda: time.monotonic() + PENDING_TIMEOUT)
    retry: list[bytes] | None = None           # a chain record, sent again if the chain restarts


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Server:
    def __init__(self, home: Home, listen: str | None, log_level: str, log_file: IO[Any] | None,
                 restore: bool = True, config: manifests.ServerConfig | None = None,
                 limits: limits_.Controller | None = None, user: tuple[int, int] | None = None) -> None:
        self.home = home
        self.restore = restore
        self.config = config or manifests.ServerConfig()
        self.limits = limits or limits_.RlimitController(reason="not configured")
        self.user = list(user) if user else None
        self.listen = listen or home.management_endpoint
        self.log_level = log_level
        self.log_file = log_file
        self.ctx = zmq.Context()
        self.registry = Registry()
        self.directory = Directory(self)
        self.supervision = Supervision(self)
        self.pending: dict[str, Pending] = {}
        self.channels: dict[str, tuple[bytes, str]] = {}      # channel id -> (client, actor id)
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._ids = itertools.count()
        self.stopping = False
        self.forkserver = ForkServer(home, log_level, log_file, self.limits.worker_parents())
        self.output = OutputRelay(log_file)
        self.chain_proc = Child("chain", home, ["--parent", str(os.getpid()), "--log-level", log_level,
                                                "--durability", self.config.durability], log_file)
        self.gate = Gate(self)
        self.chain_error: str | None = None      # why the chain refuses new events, while it does
        self._chain_deaths = 0
        self._chain_restart_due = False
        self._chain_started = time.monotonic()
        self.public_key = ""
        self.saved = SavedActors(home.actors)

    # ---- timers and ids ---------------------------------------------------------------------

    def later(self, delay: float, fn: Callable[[], None]) -> Timer:
        t = Timer(time.monotonic() + delay, next(self._seq), fn)
        heapq.heappush(self._timers, t)
        return t

    def _run_timers(self) -> float:
        """Runs due timers; returns seconds until the next one."""
        while self._timers:
            t = self._timers[0]
            if t.cancelled:
                heapq.heappop(self._timers)
                continue
            delay = t.when - time.monotonic()
            if delay > 0:
                return delay
            heapq.heappop(self._timers)
            self._guarded(t.fn)
        return 1.0

    @staticmethod
    def _guarded(fn: Callable[..., None], *args: Any) -> None:
        """A bug in one handler is logged; the server and every other actor keep going."""
        try:
            fn(*args)
        except Exception:
            log.exception("theater-server: internal error (continuing)")

    def new_id(self) -> str:
        return f"s{next(self._ids)}"

    # ---- start and stop ---------------------------------------------------------------------

    def open(self) -> None:
        """Starts the chain process and the fork server, then opens the sockets."""
        self.home.ensure()
        keys.load_or_create(self.home)
        unlink_socket(self.home.run / "control.sock")   # the chain process clears its own
        os.chmod(self.home.keys, 0o700)
        os.chmod(self.home.run, 0o700)
        os.chmod(self.home.run / "w", 0o700)
        if self.user:
            self._share_with_workers()
        self.chain_proc.start()
        self.chain = self._dealer(self.home.chain_endpoint, b"s" + os.urandom(15))
        self.events = self.ctx.socket(zmq.SUB)
        self.events.setsockopt(zmq.RCVHWM, 100_000)
        self.events.connect(self.home.events_endpoint)
        self.relay = Relay(self, self.events)
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.ROUTER_MANDATORY, 1)      # no ROUTER_HANDOVER: ids cannot be taken over
        self.control.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        self.control.bind(self.home.control_endpoint)
        if self.user:
            self._socket_for_workers(self.home.run / "control.sock")
        self._wait_for_chain()
        if self.user:
            self._socket_for_workers(self.home.run / "chain.sock")
        self.forkserver.start()
        self.mgmt = self.ctx.socket(zmq.ROUTER)
        self.mgmt.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.mgmt.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        self.mgmt.setsockopt(zmq.SNDHWM, 100_000)
        secure_listener(self.mgmt, self.home, self.listen)
        if self.listen.startswith("ipc://"):
            unlink_socket(self.home.management_socket)
        self.mgmt.bind(self.listen)
        if self.listen.startswith("ipc://"):
            os.chmod(self.listen.removeprefix("ipc://"), 0o600)
        if self.restore:
            self._restore()

    def _restore(self) -> None:
        """Brings back the top-level actors a previous server on this home was running."""
        for doc in self.saved.load():
            try:
                m = manifests.parse(doc["manifest"], doc["source"])
            except TheaterError as e:
                log.error("cannot restore actor %s: %s", doc.get("id"), e.message)
                continue
            log.info("restoring actor %s (%s)", doc["id"], m.name)
            self.supervision.start(m, doc["manifest"], doc["base"], doc["component"], doc.get("init_state"),
                                   actor_id=doc["id"])

    def _share_with_workers(self) -> None:
        """--user: workers run as another user. They may traverse run/ (not list it), own run/w
        (their inboxes) and cache/ (compiled components), and read components/."""
        assert self.user is not None
        uid, gid = self.user
        os.chmod(self.home.root, 0o711)
        os.chmod(self.home.run, 0o711)
        for d in (self.home.run / "w", self.home.cache):
            os.chown(d, uid, gid)
            for p in d.rglob("*"):
                os.chown(p, uid, gid)
        os.chmod(self.home.components, 0o755)
        for p in self.home.components.iterdir():
            os.chmod(p, 0o644)

    def _socket_for_workers(self, path: Any) -> None:
        assert self.user is not None
        os.chown(path, 0, self.user[1])
        os.chmod(path, 0o660)

    def _dealer(self, endpoint: str, identity: bytes) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        return sock

    def _wait_for_chain(self) -> None:
        self.chain.send_multipart(protocol.encode({"k": "query", "id": "boot", "what": "key"}))
        if not self.chain.poll(15_000):
            raise TheaterError("the chain process did not start (see the server log)")
        header, _ = protocol.decode(self.chain.recv_multipart())
        self.public_key = header.get("public_key", "")

    def serve(self) -> None:
        """Runs until SIGTERM/SIGINT, then stops every actor and helper in order."""
        sig_r, sig_w = os.pipe()
        os.set_blocking(sig_r, False)
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(s, lambda *_: None)
        self.poller = poller = zmq.Poller()
        for sock in (self.mgmt, self.control, self.chain, self.events):
            poller.register(sock, zmq.POLLIN)
        self._fork_fd = self.forkserver.fileno()
        poller.register(self._fork_fd, zmq.POLLIN)
        self._out_fd = self.forkserver.output_fd()
        poller.register(self._out_fd, zmq.POLLIN)
        poller.register(sig_r, zmq.POLLIN)
        self.later(1.0, self._tick)
        log.info("theater-server ready: %s (home %s); limits: %s", self.listen, self.home.root,
                 self.limits.describe())
        while not (self.stopping and self.supervision.idle()):
            timeout = self._run_timers()
            for sock, _ in poller.poll(max(0.0, min(timeout, 1.0)) * 1000):
                if sock == sig_r:
                    self._signals(sig_r)
                elif sock == self._out_fd:
                    if not self.output.read(self._out_fd):
                        self.poller.unregister(self._out_fd)      # the fork server is gone: see its report
                        self._out_fd = -1
                elif sock == self._fork_fd:
                    for report in self.forkserver.reports():
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
            self.supervision.stop_all()
        if signal.SIGCHLD in got:
            self._check_helpers()

    def _check_helpers(self) -> None:
        status = self.chain_proc.poll()
        if status is not None and not self.stopping and not self._chain_restart_due:
            self._chain_restart_due = True          # poll() keeps answering until the restart
            quick = time.monotonic() - self._chain_started < CHAIN_STABLE
            self._chain_deaths = self._chain_deaths + 1 if quick else 1
            delay = min(CHAIN_RESTART_MAX, CHAIN_RESTART_DELAY * 2 ** (self._chain_deaths - 1))
            log.error("chain process exited (status %s); restarting it in %.1fs", status, delay)
            self.later(delay, self._restart_chain)
            for rid, p in list(self.pending.items()):
                if p.actor is None and p.retry is None:     # a query: the new chain process never saw it
                    del self.pending[rid]
                    self._give_up(p, TheaterError("the chain process restarted; try again"))
        if self.forkserver.poll() is not None and not self.stopping:
            self._restart_forkserver()

    def _restart_forkserver(self) -> None:
        self.poller.unregister(self._fork_fd)
        if self._out_fd >= 0:
            self.poller.unregister(self._out_fd)
        self.forkserver.stop(0)
        if self.stopping:
            return
        log.error("worker fork server exited; restarting it")
        self.forkserver.start()
        self._fork_fd = self.forkserver.fileno()
        self._out_fd = self.forkserver.output_fd()
        self.poller.register(self._fork_fd, zmq.POLLIN)
        self.poller.register(self._out_fd, zmq.POLLIN)

    def _restart_chain(self) -> None:
        self._chain_restart_due = False
        if self.chain_proc.poll() is None:
            return
        self.chain_proc.start()
        self._chain_started = time.monotonic()
        self.chain_error = None             # the new process says so if it cannot write either
        self.gate.rebind_all()
        for rec in self.registry:
            if rec.alive:
                self.to_worker(rec.actor_id, {"k": "chain_restarted"})
        for p in self.pending.values():
            if p.retry is not None:
                p.deadline = time.monotonic() + PENDING_TIMEOUT
                self.chain.send_multipart(p.retry)

    def remove_group(self, group: limits_.Group, tries: int = 20) -> None:
        """Removes an ended incarnation's cgroup; the kernel may need a moment after the exit."""
        group.remove(timeout=0)
        if group.path is not None and group.path.exists() and tries > 0:
            self.later(0.05, lambda: self.remove_group(group, tries - 1))

    def _close(self) -> None:
        self.forkserver.stop(HELPER_STOP_TIMEOUT)
        self.limits.close()             # after the spares, which sit in their own groups, are gone
        self.chain.send_multipart(protocol.encode({"k": "shutdown"}))
        self.chain_proc.wait(HELPER_STOP_TIMEOUT)
        if self.listen.startswith("ipc://"):
            unlink_socket(self.home.management_socket)
        self.ctx.destroy(linger=0)
        log.info("theater-server stopped")

    def _tick(self) -> None:
        now = time.monotonic()
        for rid, p in list(self.pending.items()):
            if now > p.deadline:
                del self.pending[rid]
                self._give_up(p, Timeout("no answer in time"))
        self.supervision.check_hangs(now)
        self._check_helpers()
        self.later(1.0, self._tick)

    # ---- messages in --------------------------------------------------------------------------

    def _drain(self, sock: zmq.Socket) -> None:
        for _ in range(1000):          # then let the other sockets have a turn
            try:           # a worker's messages as Frames: they carry its credentials (gate.py)
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=sock is not self.control)
            except zmq.Again:
                return
            if sock is self.mgmt:
                self._guarded(self._from_client, frames)
            elif sock is self.control:
                self._guarded(self._from_worker, frames)
            elif sock is self.chain:
                self._guarded(self._from_chain, frames)
            else:
                self._guarded(self.relay.published, frames)

    def _from_client(self, frames: list[bytes]) -> None:
        client, body = frames[0], frames[1:]
        try:
            header, data = protocol.decode(body)
        except ProtocolError as e:
            self.fail(client, _request_id(body), e)
            return
        handler = api.HANDLERS.get(header["k"])
        if handler is None:
            self.fail(client, header.get("id", ""), ProtocolError(f"{header['k']!r} is not a client request"))
            return
        req = api.Request(self, client, header.get("id", ""), header, data)
        try:
            handler(req)
        except TheaterError as e:
            req.fail(e)
        except Exception as e:                  # a bug: logged, and the client still gets an answer
            log.exception("theater-server: internal error handling %s", header["k"])
            req.fail(TheaterError(f"internal error in the server: {type(e).__name__}: {e}"))

    def _from_worker(self, frames: list[Any]) -> None:
        admitted = self.gate.admit(frames)
        if admitted is not None:
            self.worker_message(*admitted)

    def worker_message(self, rec: ActorRecord, header: dict[str, Any], data: list[bytes]) -> None:
        """A message from ``rec``'s worker (attributed by the gate)."""
        rec.last_seen = time.monotonic()
        kind = header["k"]
        if kind in ("ok", "error", "reply"):
            self._answer(header.get("re") or header.get("rid", ""), header, data)
        elif kind == "msg":
            self._worker_msg(rec.actor_id, header, data)
        elif kind == "resolve":
            self.directory.resolve(rec, header)
        elif kind in children.KINDS:
            if rec.manifest.has_handler("supervisor"):
                children.handle(self, rec, header, data)
            else:
                self.to_worker(rec.actor_id, protocol.error(header["id"], Refused(
                    "this actor's manifest grants no supervisor handler")))
        else:
            self.supervision.on_worker(rec, header, data)

    def _worker_msg(self, actor_id: str, header: dict[str, Any], data: list[bytes]) -> None:
        """A worker writing on a channel whose other end is a client."""
        ch = header.get("ch", "")
        entry = self.channels.get(ch)
        if entry is None:
            return
        client, _ = entry
        if header["what"] == "chan_msg":
            self.push(client, {"k": "channel_message", "channel": ch}, *data[:1])
        elif header["what"] == "chan_close":
            del self.channels[ch]
            self.push(client, {"k": "channel_closed", "channel": ch})

    def _from_chain(self, frames: list[bytes]) -> None:
        try:
            header, data = protocol.decode(frames)
        except ProtocolError as e:
            log.warning("malformed message from the chain: %s", e)
            return
        if header["k"] in ("ok", "error"):
            self._answer(header["re"], header, data)
        elif header["k"] == "chain_status":
            error = header.get("error")
            if error != self.chain_error:
                if error:
                    log.error("the chain refuses new events: %s; actors wait until it can write", error)
                else:
                    log.warning("the chain stores events again")
                self.chain_error = error if isinstance(error, str) else None

    def _answer(self, rid: str, header: dict[str, Any], data: list[bytes]) -> None:
        p = self.pending.pop(rid, None)
        if p is None:
            return
        if p.then is not None:
            p.then(header, data)
            return
        if p.client is None:
            return
        if header["k"] == "error":
            self.fail(p.client, p.client_id, from_wire(header["code"], header["error"]))
        elif header["k"] == "reply" and not header.get("ok"):
            self.fail(p.client, p.client_id, from_wire(header.get("code", "actor_failed"),
                                                       str(header.get("error", "failed"))))
        else:
            fields = {k: v for k, v in header.items() if k not in ("k", "re", "rid", "ok")}
            self.reply(p.client, p.client_id, fields, *data)

    # ---- messages out -------------------------------------------------------------------------

    def reply(self, client: bytes, request_id: str, fields: dict[str, Any], *frames: bytes) -> None:
        self.push(client, protocol.ok(request_id, **fields), *frames)

    def fail(self, client: bytes, request_id: str, exc: TheaterError) -> None:
        self.push(client, protocol.error(request_id, exc))

    def push(self, client: bytes, header: dict[str, Any], *frames: bytes) -> bool:
        """Sends to a client without blocking; False if it is gone or not reading."""
        try:
            self.send_client(client, header, *frames)
            return True
        except zmq.ZMQError:
            return False

    def send_client(self, client: bytes, header: dict[str, Any], *frames: bytes) -> None:
        self.mgmt.send_multipart([client, *protocol.encode(header, *frames)], zmq.NOBLOCK)

    def to_worker(self, actor_id: str, header: dict[str, Any], *frames: bytes) -> bool:
        rec = self.registry.get(actor_id)
        if rec is None or rec.ident is None:
            return False
        try:
            self.control.send_multipart([rec.ident, *protocol.encode(header, *frames)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as e:
            log.debug("message to worker %s dropped: %s", actor_id, e)
            return False

    def ask_worker(self, actor_id: str, header: dict[str, Any], *frames: bytes, client: bytes | None = None,
                   client_id: str = "", then: Callable[[dict[str, Any], list[bytes]], None] | None = None) -> None:
        """Sends a request to a worker; its answer goes to ``client`` (or ``then``)."""
        rid = new_request_id()     # the actor sees it as the request id: unique, not a counter
        header = {**header, "rid" if header["k"] == "msg" else "id": rid}
        self.pending[rid] = Pending(client, client_id, actor_id, then)
        if not self.to_worker(actor_id, header, *frames):
            self._give_up(self.pending.pop(rid), TheaterError(f"actor {actor_id} is not reachable"))

    def ask_chain(self, header: dict[str, Any], *frames: bytes, client: bytes | None = None, client_id: str = "",
                  then: Callable[[dict[str, Any], list[bytes]], None] | None = None) -> None:
        """A query or record for the chain. Records survive a chain restart (sent again: at
        least once); queries fail back to their client, who may ask again."""
        rid = self.new_id()
        msg = protocol.encode({**header, "id": rid}, *frames)
        self.pending[rid] = Pending(client, client_id, None, then, retry=msg if header["k"] == "record" else None)
        self.chain.send_multipart(msg)

    def tell_chain(self, header: dict[str, Any]) -> None:
        """A notice for the chain (no answer): bind and unbind."""
        try:
            self.chain.send_multipart(protocol.encode(header), zmq.NOBLOCK)
        except zmq.Again:
            log.error("chain socket full: %s for %s dropped", header["k"], header.get("actor"))

    def fail_pending_for(self, actor_id: str, reason: str) -> None:
        for rid, p in list(self.pending.items()):
            if p.actor == actor_id:
                del self.pending[rid]
                self._give_up(p, TheaterError(reason))

    def _give_up(self, p: Pending, err: TheaterError) -> None:
        """No answer will come for ``p``: its continuation or its client hears why."""
        if p.then is not None:
            p.then({"k": "error", **err.to_wire()}, [])
        elif p.client is not None:
            self.fail(p.client, p.client_id, err)


def _request_id(body: list[bytes]) -> str:
    """The id of a request we could not decode, if it can be found at all."""
    try:
        value = orjson.loads(body[0]).get("id", "")
    except (orjson.JSONDecodeError, AttributeError, IndexError):
        return ""
    return value if isinstance(value, str) else ""

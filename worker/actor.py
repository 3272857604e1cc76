"""One actor in its own process: load, init, then one export call at a time from a mailbox.

Start-up: ``hello`` to the server (which answers with the manifest and how to start),
``resume`` from the chain (head and last committed state), load and link the component,
call ``init``, report ``ready``. Then the loop: take messages from the control socket
(server), the inbox (other actors) and the chain (acknowledgements), run mailbox items
one at a time, ship events. An export that traps or returns ``Err`` fails the actor: the
failure is recorded, the server is told why, and the process ends once the chain holds
every event.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import wasmtime
import zmq
from wasmtime import component as wc

from theater import events, protocol
from theater import manifest as manifests
from theater.errors import ActorFailed, ProtocolError, Refused, TheaterError, Timeout, from_wire
from theater.paths import Home

from . import component, handlers, records, wire
from .chainlink import ChainLink
from .codec import Export
from .handlers import supervisor as supervision
from .handlers.message_server import MessageServer
from .peers import Peers
from .throttle import Throttle
from .watchdog import Watchdog

EXIT_NORMAL = 0
EXIT_FAILED = 70           # the actor failed: trap, Err, limit
EXIT_START_FAILED = 71     # it never became ready: bad component, init failed

# A worker sends a heartbeat when the control socket has been quiet this long; the
# server calls a worker hung after several missed beats (plus its call timeout).
HEARTBEAT_INTERVAL = 2.0
# A worker waiting for a reply polls without sleeping this long first. On a VM without
# guest halt-polling, waking a vCPU that went idle costs ~100 us per hop; a request's
# reply usually comes within this, so the wait costs at most this much CPU per request
# (measured: actor->actor round trip p50 460 -> 325 us here).
REPLY_SPIN = 0.0005
# While replies keep coming within REPLY_SPIN, the other sockets are served this often.
PUMP_INTERVAL = 0.005
# Mailbox items run per loop turn before the sockets are polled again: enough to save the
# poll on a burst, few enough that control messages wait at most a few calls.
BURST = 16
# At exit, how long to wait for the chain to acknowledge the last events.
SETTLE_TIMEOUT = 3.0
# A sender whose one-way messages are refused hears of it at most this often.
REFUSAL_NOTICE = 0.02
# How long a worker waits for the server to acknowledge why it ends (an orphaned worker
# must not linger).
LAST_WORDS_TIMEOUT = 2.0
# How long start-up waits for the server's and the chain's answers.
STARTUP_TIMEOUT = 10.0

ACTOR = "theater:simple/actor"

log = logging.getLogger("theater.worker")


Route = tuple[str, bytes | None]    # ("peer", identity) or ("control", None)


@dataclass(slots=True)
class Incoming:
    what: str                  # send | request | chan_open | chan_msg | chan_close
    header: dict[str, Any]
    payload: bytes
    route: Route

    @property
    def sender(self) -> str | None:
        kind, ident = self.route
        return ident.decode() if kind == "peer" and ident else None


class Failure(Exception):
    """The actor failed during a call; ``reason`` classifies it (trap, error, timeout, fuel, host)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Stop(Exception):
    """Leave the main loop now."""


@dataclass
class Sockets:
    """A worker's own sockets, made by the spare before it knows its actor (connecting takes a
    ZeroMQ handshake: better done before the spawn than during it). The server learns which
    actor a connection is from the worker's hello."""

    control: zmq.Socket
    chain: zmq.Socket
    inbox: zmq.Socket
    endpoint: str

    @classmethod
    def open(cls, ctx: zmq.Context, home: Home) -> Sockets:
        # unguessable: the server and the chain attribute messages by pid, and a routing id
        # nobody can predict cannot be claimed by another process after this one exits
        identity = b"w" + os.urandom(15)

        def dealer(endpoint: str, hwm: int) -> zmq.Socket:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, identity)
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.LINGER, 2000)
            sock.connect(endpoint)
            return sock
        inbox = ctx.socket(zmq.ROUTER)
        inbox.setsockopt(zmq.ROUTER_HANDOVER, 1)
        inbox.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        endpoint = home.worker_endpoint(os.getpid())
        inbox.bind(endpoint)
        # events queue on the chain socket (up to MAX_UNACKED) while the chain restarts
        return cls(dealer(home.control_endpoint, 1000), dealer(home.chain_endpoint, 100_000), inbox, endpoint)


class Actor:
    def __init__(self, ctx: zmq.Context, home: Home, actor_id: str, name: str, sockets: Sockets) -> None:
        self.ctx = ctx
        self.home = home
        self.actor_id = actor_id
        self.name = name
        self.log = log
        self.poller = zmq.Poller()
        self.control, self.chain_sock, self.inbox = sockets.control, sockets.chain, sockets.inbox
        self.endpoint = sockets.endpoint
        for sock in (self.control, self.chain_sock, self.inbox):
            self.poller.register(sock, zmq.POLLIN)
        self.mailbox: deque[Incoming] = deque()
        self.replies: dict[str, tuple[dict[str, Any], list[bytes]]] = {}
        self.peers = Peers(self)
        self.messages = MessageServer(self)
        self.state: bytes | None = None
        self.manifest: manifests.Manifest | None = None
        self.chain: ChainLink | None = None
        self.throttle: Throttle | None = None
        self.watchdog: Watchdog | None = None
        self.shutdown_data: bytes | None = None
        self.stop_reason: str | None = None
        self.call_deadline: float | None = None
        self.last_control = self.pumped_at = time.monotonic()
        self.calls = 0
        self.refused = 0                       # messages turned away while the mailbox is full
        self._notified: dict[bytes, float] = {}
        self._exports: dict[str, set[str]] = {}
        self._fuel, self._call_timeout, self._takes_messages = 0, 0.0, False
        self._export_names: dict[str, str] = {}
        self._funcs: dict[tuple[str, str], Export] = {}

    # ---- start ------------------------------------------------------------------------------

    def start(self, component_sha: str, fuel: bool, confine: Callable[[], None]) -> None:
        """Everything up to ``ready``; raises TheaterError with what went wrong.

        While the server's and the chain's answers to hello and resume are on their way, the
        worker confines itself (cgroup, rlimits, user: before any actor code exists in it) and
        loads its component (the spawn named it) and checks its shape.
        """
        hello = self._ask(self.control, {"k": "hello", "actor": self.actor_id, "pid": os.getpid(),
                                         "endpoint": self.endpoint})
        resume_id = self._ask(self.chain_sock, {"k": "resume", "actor": self.actor_id, "name": self.name})
        confine()
        engine = component.make_engine(fuel)
        self.watchdog = Watchdog(engine)
        comp, shape, compiled = component.load(engine, self.home.cache, self.home.components / f"{component_sha}.wasm",
                                               component_sha, fuel)
        config, frames = self._answer(self.wait_reply(hello, timeout=STARTUP_TIMEOUT))
        m = manifests.parse(config["manifest"], config["source"])
        if config.get("limits"):        # the server's defaults under what the manifest says
            m = replace(m, limits=manifests.Limits(**config["limits"]))
        self.manifest = m
        shape.granted(m)
        init_state = frames[0] if config.get("has_init") and frames else None

        resume, rframes = self._answer(self.wait_reply(resume_id, timeout=STARTUP_TIMEOUT))
        head = bytes.fromhex(resume["hash"]) if resume.get("hash") else None
        self.throttle = throttle = Throttle(m.limits.events_per_second, m.limits.event_bytes_per_second,
                                            time.monotonic())
        self.chain = ChainLink(self.chain_sock, self.actor_id, resume["seq"], head,
                               on_bytes=lambda n: throttle.spent(n, time.monotonic()))
        last_state = rframes[0] if resume.get("has_state") and rframes else None

        self._fuel, self._call_timeout = m.limits.fuel, m.limits.call_timeout
        self._takes_messages = m.has_handler("message-server")
        self._exports = {base: set(shape.exports[name]) for base, name in shape.export_names.items()}
        self._export_names = shape.export_names
        linker = wc.Linker(engine)
        handlers.link(linker, engine, comp, self, shape.imports)
        self.store = wasmtime.Store(engine)
        self.store.set_limits(memory_size=m.limits.memory)
        self.store.set_epoch_deadline(1)
        self.watchdog.watch(self.store, self.ship_events)
        if fuel:
            self.store.set_fuel(m.limits.fuel)      # instantiation runs wasm too
        self.watchdog.arm(self._call_timeout)       # so does a start function that never ends
        try:
            self.instance = linker.instantiate(self.store, comp)
        except wasmtime.WasmtimeError as e:
            if "exceeds memory limits" in str(e):
                raise Failure("memory", f"the component needs more linear memory than its limit "
                                        f"({m.limits.memory} bytes): {_first_line(e)}") from None
            if self.watchdog.reason is not None:
                raise Failure("timeout", f"instantiation exceeded the call time limit "
                                         f"({self._call_timeout:g}s)") from None
            raise ActorFailed(f"instantiation failed: {_first_line(e)}") from None
        finally:
            self.watchdog.disarm()
            linker.close()

        resuming = config["mode"] == "resume" and resume.get("has_state")
        self.state = last_state if resuming else init_state
        self.record("lifecycle/start", {
            "incarnation": config.get("incarnation", 0), "component": config["component"],
            "manifest": {"name": m.name, "version": m.version}, "mode": "resume" if resuming else "init",
            "state": self.state, "reason": config.get("reason"), "compiled": compiled,
        })
        self.call(ACTOR, "init", (self.actor_id,))
        self.chain.flush()
        self.send_control({"k": "ready", "actor": self.actor_id})

    # ---- calls into wasm ---------------------------------------------------------------------

    def exports(self, interface: str, fn: str) -> bool:
        return fn in self._exports.get(interface, ())

    def _func(self, interface: str, fn: str) -> Export:
        f = self._funcs.get((interface, fn))
        if f is None:
            idx = self.instance.get_export_index(self.store, self._export_names[interface])
            func = self.instance.get_func(self.store, self.instance.get_export_index(self.store, fn, idx))
            assert func is not None
            f = self._funcs[(interface, fn)] = Export(func, self.store)
        return f

    def call(self, interface: str, fn: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """Runs one export with the current state; returns what it returned after the state."""
        assert self.chain is not None and self.watchdog is not None and self.manifest is not None
        name = f"{interface}.{fn}"
        # the events leave within a watchdog tick once wasm runs: a worker the kernel kills
        # during a long call still leaves a record of what it was doing
        self.record("wasm", records.call_event(name, params))
        if self._fuel:
            self.store.set_fuel(self._fuel)
        self.store.set_epoch_deadline(1)
        self.call_deadline = time.monotonic() + self._call_timeout
        self.watchdog.arm(self._call_timeout)
        self.calls += 1
        try:
            result = self._func(interface, fn)(self.state, params)
        except wasmtime.WasmtimeError as e:
            raise self._failed(name, *self._classify(e)) from None
        except TheaterError as e:            # a host function gave up (e.g. stopping)
            raise self._failed(name, "host", e.message) from None
        except MemoryError:                  # the worker process is over its memory rlimit
            raise self._failed(name, "memory", "the worker ran out of process memory") from None
        except Exception as e:               # a host function broke: the actor traps
            raise self._failed(name, "host", f"{type(e).__name__}: {e}") from None
        finally:
            self.watchdog.disarm()
            self.call_deadline = None
        tag, payload = result
        if tag == "err":
            raise self._failed(name, "error", payload)
        new_state, returns = records.split_result(payload)
        event, changed = records.result_event(name, returns, self.state, new_state)
        self.record("wasm", event, state_changed=changed)
        self.chain.seal()                   # what the call sent leaves once its result is durable
        self.state = new_state
        return returns

    def _classify(self, e: wasmtime.WasmtimeError) -> tuple[str, str]:
        text = str(e)
        assert self.watchdog is not None
        if self.watchdog.reason is not None:
            if self.watchdog.reason == "timeout":
                return "timeout", f"call exceeded its time limit ({self.manifest.limits.call_timeout:g}s)"
            return "stopped", "interrupted: the actor was asked to stop"
        if "all fuel consumed" in text:
            return "fuel", f"call used up its fuel ({self.manifest.limits.fuel})"
        return "trap", records.trap_message(e)

    def _failed(self, function: str, reason: str, message: str) -> Failure:
        self.record("wasm", records.error_event(function, reason, message))
        assert self.chain is not None
        self.chain.seal()
        return Failure(reason, message)

    # ---- events --------------------------------------------------------------------------

    def record(self, event_type: str, value: Any, state_changed: bool = False) -> None:
        """Adds an event to this actor's chain, waiting first if the actor is over its event rate."""
        assert self.chain is not None and self.throttle is not None
        delay = self.throttle.wait(time.monotonic())
        if delay > 0:
            self._slow_down(delay)
        self.chain.emit(event_type, value, state_changed)

    def _slow_down(self, delay: float) -> None:
        """Throttling: the host call waits (serving the sockets meanwhile); recorded once a second."""
        assert self.chain is not None and self.throttle is not None
        now = time.monotonic()
        report = self.throttle.report(now)
        if report is not None:
            self.chain.emit("limit/throttled", report)
        deadline = now + delay
        while (left := deadline - time.monotonic()) > 0:
            self.pump(left)

    def own_events(self) -> list[events.Event]:
        """This actor's chain as stored so far, including events still on their way."""
        assert self.chain is not None
        self._settle(STARTUP_TIMEOUT)
        header, frames = self.chain_request({"k": "query", "what": "events", "actor": self.actor_id})
        return [events.from_wire(self.actor_id, m, d) for m, d in zip(header["events"], frames, strict=True)]

    # ---- messaging plumbing --------------------------------------------------------------

    def ship_events(self) -> None:
        """Sends pending events now (the watchdog does, every tick of a long call)."""
        if self.chain is not None:
            self.chain.flush()

    def send_after_events(self, sock: zmq.Socket, frames: list[bytes],
                          failed: Callable[[zmq.ZMQError], None]) -> None:
        """Sends a message once the call that sends it has ended and its events are durable."""
        assert self.chain is not None
        self.chain.hold(sock, frames, failed)

    def take_acks(self) -> None:
        """Handles the chain's waiting answers, if any (cheap: one flag read when there are none)."""
        if wire.readable(self.chain_sock):
            self.drain(self.chain_sock)

    def wait_durable(self) -> None:
        """Waits (serving the sockets) until the chain holds every event emitted so far: before
        an effect the current call waits on (a request, a channel open, a spawn), which must not
        leave ahead of the events that led to it, nor ahead of the messages sent before it."""
        chain = self.chain
        assert chain is not None
        chain.seal()
        if chain.durable:
            return
        chain.sync()
        deadline = self.call_deadline if self.call_deadline is not None else time.monotonic() + STARTUP_TIMEOUT
        while not chain.durable:
            if self.watchdog is not None and self.watchdog.stop_requested:
                raise Refused("the actor is stopping")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f" ({chain.refusal})" if chain.refusal else ""
                raise Timeout(f"the chain did not store this call's events within its time limit{why}")
            if _spin_until_readable(self.chain_sock, REPLY_SPIN):
                self.drain(self.chain_sock)     # the acknowledgement, most likely
                continue
            self.pump(min(remaining, HEARTBEAT_INTERVAL))

    def is_self(self, target: str) -> bool:
        return target == self.actor_id

    def enqueue_local(self, what: str, header: dict[str, Any], *frames: bytes) -> None:
        self.mailbox.append(Incoming(what, header, frames[0] if frames else b"", ("peer", self.actor_id.encode())))

    def reply(self, route: Route, header: dict[str, Any], *frames: bytes, quiet: bool = False,
              held: bool = True) -> None:
        """Answers (or writes on a channel to) whoever a message came from, once the chain holds
        the events that led to it: nobody sees an effect the chain could lose. A refusal, which
        carries nothing of the actor's, goes at once (``held=False``)."""
        kind, ident = route
        if kind != "control" and ident == self.actor_id.encode():
            return                              # our own message: nobody waits on it
        msg = protocol.encode(header, *frames)
        sock, frames_out = (self.control, msg) if kind == "control" else (self.inbox, [ident, *msg])

        def failed(e: zmq.ZMQError) -> None:
            if not quiet:
                log.warning("%s: reply to %s dropped: %s", self.name, ident, e)
        if held and self.chain is not None:
            self.chain.hold(sock, frames_out, failed, block=kind == "control")
            self.chain.seal()
            return
        try:
            if kind == "control":
                sock.send_multipart(frames_out)     # the server reads its control socket promptly
            else:
                wire.send(sock, frames_out)
        except zmq.ZMQError as e:
            failed(e)

    def refuse(self, item: Incoming, error: str) -> None:
        """Turns a message away: a request gets an error reply; the sender of a one-way message
        is told (at most every REFUSAL_NOTICE per sender), so its next sends fail at once."""
        rid = item.header.get("rid")
        if rid is not None:
            self.reply(item.route, {"k": "reply", "rid": rid, "ok": False, "error": error}, quiet=True, held=False)
            return
        kind, ident = item.route
        now = time.monotonic()
        if kind == "peer" and ident is not None and now - self._notified.get(ident, 0.0) > REFUSAL_NOTICE:
            self._notified[ident] = now
            self.reply(item.route, {"k": "refused", "error": error}, quiet=True, held=False)

    def send_control(self, header: dict[str, Any], *frames: bytes) -> None:
        self.control.send_multipart(protocol.encode(header, *frames))
        self.last_control = time.monotonic()

    def _ask(self, sock: zmq.Socket, header: dict[str, Any], *frames: bytes) -> str:
        """Sends a request without waiting; its id, for ``wait_reply``."""
        rid = header.setdefault("id", os.urandom(8).hex())
        sock.send_multipart(protocol.encode(header, *frames))
        if sock is self.control:
            self.last_control = time.monotonic()
        return rid

    def control_request(self, header: dict[str, Any], *frames: bytes,
                        timeout: float | None = None) -> tuple[dict[str, Any], list[bytes]]:
        return self._answer(self.wait_reply(self._ask(self.control, header, *frames), timeout=timeout))

    def chain_request(self, header: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        return self._answer(self.wait_reply(self._ask(self.chain_sock, header), timeout=STARTUP_TIMEOUT))

    @staticmethod
    def _answer(reply: tuple[dict[str, Any], list[bytes]]) -> tuple[dict[str, Any], list[bytes]]:
        header, frames = reply
        if header["k"] == "error":
            raise from_wire(header["code"], header["error"])
        return header, frames

    def wait_reply(self, rid: str, timeout: float | None = None, peer: str | None = None,
                   sock: zmq.Socket | None = None) -> tuple[dict[str, Any], list[bytes]]:
        """Pumps every socket until the reply to ``rid`` arrives, the call's deadline passes,
        the peer is reported gone, or a stop is asked for. The reply is expected on ``sock``
        (a peer's connection), which is watched without sleeping for REPLY_SPIN first."""
        if timeout is not None:
            deadline = time.monotonic() + timeout
        elif self.call_deadline is not None:
            deadline = self.call_deadline
        else:
            deadline = time.monotonic() + STARTUP_TIMEOUT
        while rid not in self.replies:
            if peer is not None:
                self.peers.check(peer)
            if self.watchdog is not None and self.watchdog.stop_requested:
                raise Refused("the actor is stopping")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"no reply{f' from {peer}' if peer else ''} within the call's time limit")
            if sock is not None and _spin_until_readable(sock, REPLY_SPIN):
                self.drain(sock)            # the reply, most likely
                if time.monotonic() - self.pumped_at > PUMP_INTERVAL:
                    self.pump(0)            # the other sockets' turn: acks, control, heartbeats
                continue
            self.pump(min(remaining, HEARTBEAT_INTERVAL))
        return self.replies.pop(rid)

    # ---- the loop ------------------------------------------------------------------------

    def pump(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for traffic and handles all that is there; ships
        pending events once they are due (see chainlink.FLUSH_INTERVAL)."""
        if self.chain is not None:
            if self.chain.sync_wanted:          # effects wait: their events go now, acknowledged at once
                self.chain.sync()
                if timeout > 0 and _spin_until_readable(self.chain_sock, REPLY_SPIN):
                    self.drain(self.chain_sock)
            due = self.chain.flush_in(time.monotonic())
            if due is not None:
                if due <= 0:
                    self.chain.flush()
                else:
                    timeout = min(timeout, due)
        # pyzmq truncates the timeout to whole milliseconds: round up, or a wait shorter than
        # 1 ms becomes a busy loop
        for sock, _ in self.poller.poll(math.ceil(timeout * 1000)):
            if isinstance(sock, int):
                if self.watchdog is not None:
                    self.watchdog.drain_wake()
                continue
            self.drain(sock)
        self.pumped_at = now = time.monotonic()
        if self.chain is None:
            return
        if now - self.last_control >= HEARTBEAT_INTERVAL:
            self.send_control({"k": "heartbeat", "events": self.chain.emitted, "calls": self.calls,
                               "mailbox": len(self.mailbox)})
        self.chain.maybe_resend(now)

    def drain(self, sock: zmq.Socket) -> None:
        """Handles every message waiting on ``sock``, which a poll (or ``readable``) has just
        said holds one."""
        frames = wire.recv(sock)
        while frames is not None:
            self._dispatch(sock, frames)
            frames = wire.recv(sock) if wire.readable(sock) else None

    def _dispatch(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        ident = None
        if sock is self.inbox:
            ident, frames = frames[0], frames[1:]
        try:
            header, body = protocol.decode(frames)
        except ProtocolError as e:
            log.warning("%s: dropped a malformed message: %s", self.name, e)
            return
        kind = header["k"]
        if sock is self.chain_sock:
            if kind == "ack":
                assert self.chain is not None
                self.chain.on_ack(header["seq"])
            elif kind == "nack":
                assert self.chain is not None
                if not self.chain.on_nack(header["seq"], header["error"]):
                    log.error("%s: the chain refused our events: %s", self.name, header["error"])
                    self.stop_reason = self.stop_reason or "chain"
            elif "re" in header:
                self.replies[header["re"]] = (header, body)
            return
        if kind == "msg":
            route: Route = ("peer", ident) if ident is not None else ("control", None)
            self._accept(Incoming(header["what"], header, body[0] if body else b"", route))
        elif kind == "reply":
            self.replies[header["rid"]] = (header, body)
        elif kind == "refused":
            self.peers.refused(sock, str(header.get("error", "refused")))
        elif kind in ("ok", "error"):
            self.replies[header["re"]] = (header, body)
        elif kind == "get_state":
            has = self.state is not None
            self.send_control(protocol.ok(header["id"], has_state=has), *([self.state] if has else []))
        elif kind == "peer":
            self.peers.moved(header["actor"])
        elif kind == "chain_restarted":
            assert self.chain is not None
            self.chain.restarted()
        elif kind == "stop_actor":
            self.stop_reason = self.stop_reason or header["reason"]

    def _accept(self, item: Incoming) -> None:
        assert self.manifest is not None
        if item.what in supervision.EXPORTS:
            self.mailbox.append(item)       # news of a child: never refused (the server sent it)
        elif not self._takes_messages:
            self.refuse(item, f"actor {self.actor_id} does not take messages "
                              f"(its manifest grants no message-server handler)")
        elif self.stop_reason or (self.watchdog and self.watchdog.stop_requested):
            self.refuse(item, f"actor {self.actor_id} is stopping")
        elif len(self.mailbox) >= self.manifest.limits.mailbox:
            if not self.refused:          # an episode starts: recorded, and again when it ends
                self.record("limit/mailbox", {"event": "full", "mailbox": self.manifest.limits.mailbox})
            self.refused += 1
            self.refuse(item, f"actor {self.actor_id}'s mailbox is full ({self.manifest.limits.mailbox} messages)")
        else:
            if self.refused:
                self.record("limit/mailbox", {"event": "open", "refused": self.refused})
                self.refused = 0
            self.mailbox.append(item)

    def request_shutdown(self, data: bytes | None) -> None:
        self.shutdown_data = data
        self.stop_reason = self.stop_reason or "shutdown"

    def run(self) -> int:
        """The main loop; returns the process exit status."""
        assert self.chain is not None and self.watchdog is not None
        self.poller.register(self.watchdog.wake_fd, zmq.POLLIN)
        try:
            while True:
                if self.watchdog.stop_requested:
                    self.stop_reason = self.stop_reason or "stopped"
                if self.stop_reason:
                    break
                busy = bool(self.mailbox) and not self.chain.congested
                self.pump(0 if busy else HEARTBEAT_INTERVAL)
                # a burst is worked off several items per turn: the sockets are looked at again
                # after BURST items (a stop still gets in: it is checked between items)
                for _ in range(BURST):
                    if not self.mailbox or self.chain.congested or self.stop_reason or self.watchdog.stop_requested:
                        break
                    item = self.mailbox.popleft()
                    if item.what in supervision.EXPORTS:
                        supervision.deliver(self, item)
                    else:
                        self.messages.deliver(item)
                    self.take_acks()        # what earlier calls of this burst answered may go now
        except Failure as f:
            return self._end_failed(f.reason, f.message)
        return self._end_normally()

    def _final_throttle_report(self) -> None:
        if self.throttle is not None and self.chain is not None:
            report = self.throttle.report(time.monotonic(), every=0)
            if report is not None:
                self.chain.emit("limit/throttled", report)

    def _end_normally(self) -> int:
        assert self.chain is not None
        self._final_throttle_report()
        reason = self.stop_reason or "stopped"
        self._drop_mailbox(f"actor {self.actor_id} stopped")
        self.record("lifecycle/stop", {"reason": reason, "data": self.shutdown_data})
        self._settle(SETTLE_TIMEOUT)
        self.last_words({"k": "exiting", "actor": self.actor_id, "reason": reason,
                         "has_data": self.shutdown_data is not None},
                        *([self.shutdown_data] if self.shutdown_data is not None else []))
        return EXIT_NORMAL

    def _end_failed(self, reason: str, message: str) -> int:
        self._final_throttle_report()
        self._drop_mailbox(f"actor {self.actor_id} failed: {message}")
        self._settle(SETTLE_TIMEOUT)
        self.last_words({"k": "failed", "actor": self.actor_id, "reason": reason, "error": message})
        return EXIT_FAILED

    def last_words(self, header: dict[str, Any], *frames: bytes) -> None:
        """Why this worker ends, told to the server before it exits: acknowledged, so the process's
        exit (which the server learns from the fork server) can never arrive ahead of its reason."""
        try:
            self.control_request(header, *frames, timeout=LAST_WORDS_TIMEOUT)
        except TheaterError:
            log.warning("%s: the server did not acknowledge why this worker ends", self.name)

    def _drop_mailbox(self, error: str) -> None:
        while self.mailbox:
            self.refuse(self.mailbox.popleft(), error)
        self.messages.fail_all(error)

    def _settle(self, timeout: float) -> None:
        """Waits until the chain holds every event (or the time is up)."""
        assert self.chain is not None
        deadline = time.monotonic() + timeout
        self.chain.sync()
        while not self.chain.settled and time.monotonic() < deadline:
            self.pump(min(0.1, max(0.0, deadline - time.monotonic())))
        if not self.chain.settled:
            log.warning("%s: %d events not acknowledged by the chain at exit", self.name, self.chain.backlog)

    def close(self) -> None:
        for sock in (self.control, self.chain_sock, self.inbox, *self.peers.sockets.values()):
            sock.close()


def _spin_until_readable(sock: zmq.Socket, seconds: float) -> bool:
    until = time.monotonic() + seconds
    while not wire.readable(sock):
        if time.monotonic() >= until:
            return False
    return True


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def main(ctx: zmq.Context, home: Home, sockets: Sockets, actor_id: str, name: str, component_sha: str,
         fuel: bool, confine: Callable[[], None]) -> int:
    """Runs one actor to its end; the process exit status."""
    actor = Actor(ctx, home, actor_id, name, sockets)
    try:
        try:
            actor.start(component_sha, fuel, confine)
        except (TheaterError, Failure) as e:
            message = e.message
            reason = e.reason if isinstance(e, Failure) else e.code
            log.info("%s: start failed: %s", name, message)
            if actor.chain is not None:
                actor._settle(SETTLE_TIMEOUT)
            actor.last_words({"k": "failed", "actor": actor_id, "reason": f"start:{reason}", "error": message})
            return EXIT_START_FAILED
        return actor.run()
    except Exception as e:          # a bug in the worker: say so, rather than vanish
        log.exception("%s: internal error", name)
        actor.last_words({"k": "failed", "actor": actor_id, "reason": "internal",
                          "error": f"worker internal error: {type(e).__name__}: {e}"})
        return EXIT_FAILED
    finally:
        actor.close()


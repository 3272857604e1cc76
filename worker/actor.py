"""One actor in its own process: start up, then one export call at a time from its mailbox, then end.

Start-up: ``hello`` to the server (which answers with the manifest and how to start),
``resume`` from the chain (head and last committed state), load and link the component,
call ``init``, report ``ready``. Then the loop: serve the sockets (``loop``), run mailbox
items one at a time through the handler that takes their kind, ship events. An export that
traps or returns ``Err`` fails the actor: the failure is recorded, the server is told why,
and the process ends once the chain holds every event.

This module only puts the parts together: the sockets and their loop (``loop``), the
mailbox (``mailbox``), events (``recorder``), calls into wasm (``calls``), and the granted
handlers (``handlers``), which it knows only through their plug-in interface.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import wasmtime
import zmq
from wasmtime import component as wc

from theater import manifest as manifests
from theater.errors import ActorFailed, Failure, TheaterError
from theater.paths import Home

from . import component, handlers, records, wasi, wit
from .calls import Calls
from .chainlink import ChainLink
from .gateway import Gateway
from .handlers.base import Handler
from .host import Host
from .loop import HEARTBEAT_INTERVAL, Loop, Sockets, answer
from .mailbox import Incoming, Mailbox, Route
from .peers import Peers
from .recorder import Recorder
from .throttle import Throttle
from .watchdog import Watchdog

EXIT_NORMAL = 0
EXIT_FAILED = 70           # the actor failed: trap, Err, limit
EXIT_START_FAILED = 71     # it never became ready: bad component, init failed

# Mailbox items run per loop turn before the sockets are polled again: enough to save the
# poll on a burst, few enough that control messages wait at most a few calls.
BURST = 16
# At exit, how long to wait for the chain to acknowledge the last events.
SETTLE_TIMEOUT = 3.0
# How long a worker waits for the server to acknowledge why it ends.
LAST_WORDS_TIMEOUT = 2.0
# At exit, at most this many messages still waiting in the inbox are read, to be refused
# to their senders (a sender that goes on sending cannot keep the worker alive).
LAST_READ = 10_000
# An orphaned worker (its server gone) tells no one why it ends and gives the chain only this
# long: the server's own deadline for its workers to follow it is a few seconds.
ORPHAN_SETTLE_TIMEOUT = 1.0
# How long start-up waits for the server's and the chain's answers.
STARTUP_TIMEOUT = 10.0

ACTOR = "theater:simple/actor"

log = logging.getLogger("theater.worker")


class Actor:
    def __init__(self, ctx: zmq.Context, home: Home, actor_id: str, name: str, sockets: Sockets) -> None:
        self.home = home
        self.actor_id = actor_id
        self.name = name
        self.loop = loop = Loop(ctx, sockets, actor_id, name)
        self.parent = os.getppid()      # the fork server: when it is gone, so is the server
        self.stop_reason: str | None = None
        self.shutdown_data: bytes | None = None
        self.watchdog: Watchdog | None = None
        self.recorder: Recorder | None = None
        self.calls: Calls | None = None
        self.mailbox: Mailbox | None = None
        self.peers: Peers | None = None
        self.limits = manifests.Limits()
        self.gateway: Gateway | None = None
        self.handlers: list[Handler] = []
        self.by_kind: dict[str, tuple[Handler, bool]] = {}      # mailbox kind -> (its handler, counted?)
        loop.on.update(msg=self._accept, get_state=self._get_state, stop_actor=self._stop_actor)
        loop.heartbeat = self._heartbeat

    # ---- start ------------------------------------------------------------------------------

    def start(self, component_sha: str, fuel: bool, confine: Callable[[], None], engine: wasmtime.Engine,
              loaded: tuple[wc.Component, component.Shape] | None) -> None:
        """Everything up to ``ready``; raises TheaterError (or Failure) with what went wrong.

        While the server's and the chain's answers to hello and resume are on their way, the
        worker confines itself (``confine``: the seccomp filter, or without the sandbox cgroup,
        rlimits and user; before any actor code exists in it) and
        loads its component (the spawn named it; the server compiled it before the fork; the
        fork server may have loaded it already: ``loaded``, see ``worker.preload``).
        """
        loop = self.loop
        hello = loop.ask(loop.control, {"k": "hello", "actor": self.actor_id, "pid": os.getpid(),
                                        "endpoint": loop.endpoint})
        resume_id = loop.ask(loop.chain_sock, {"k": "resume", "actor": self.actor_id, "name": self.name})
        confine()
        self.watchdog = watchdog = Watchdog(engine)
        loop.watchdog = watchdog
        loop.poller.register(watchdog.wake_fd, zmq.POLLIN)
        comp, shape = loaded or component.load_compiled(
            engine, self.home.compiled(component_sha, fuel), self.home.shape(component_sha))
        config, frames = answer(loop.wait_reply(hello, timeout=STARTUP_TIMEOUT))
        loop.senders.key = bytes.fromhex(config["inbox_key"])
        m = manifests.parse(config["manifest"], config["source"])
        if config.get("limits"):        # the server's defaults under what the manifest says
            m = replace(m, limits=manifests.Limits(**config["limits"]))
        shape.granted(m)
        self.limits = m.limits
        init_state = frames[0] if config.get("has_init") and frames else None

        resume, rframes = answer(loop.wait_reply(resume_id, timeout=STARTUP_TIMEOUT))
        head = bytes.fromhex(resume["hash"]) if resume.get("hash") else None
        throttle = Throttle(m.limits.events_per_second, m.limits.event_bytes_per_second, time.monotonic())
        chain = ChainLink(str(self.home.chain_stream), self.actor_id, resume["seq"], head,
                          on_bytes=lambda n: throttle.spent(n, time.monotonic()),
                          handoff=bool(resume.get("handoff")), watch=loop.watch_fd, on_message=loop.chain_message)
        loop.chain = chain
        loop.on_chain.update(ack=lambda h: chain.on_ack(h["seq"]), nack=self._nack)
        loop.on["chain_restarted"] = lambda *_: chain.restarted()
        self.recorder = recorder = Recorder(chain, throttle, loop.pump, loop.wait_for_chain)
        self.mailbox = mailbox = Mailbox(self.actor_id, m.limits.mailbox, loop.reply, recorder.record,
                                         loop.pause_inbox)
        peers = Peers(loop, self.actor_id, mailbox.put_local, recorder.record, config.get("incarnation", 0))
        loop.on.update(refused=lambda h, _b, _r, sock: peers.refused(sock, str(h.get("error", "refused")),
                                                                     _count(h.get("count"))),
                       took=lambda h, _b, _r, sock: peers.took(sock, _count(h.get("count"))),
                       peer=lambda h, *_: peers.moved(h["actor"], h.get("incarnation")))
        self.peers = peers
        self.gateway = Gateway(loop, self.home.gateway_endpoint)
        host = Host(self.actor_id, self.name, m, loop, mailbox, peers, recorder, self._shutdown, self.gateway,
                    base=config["base"], environ=config.get("environ"))
        self._grant(m, host)

        linker = wc.Linker(engine)
        parts = [*self.handlers, wasi.Wasi(host, {})] if wit.imports_wasi(shape.imports) else self.handlers
        provide = handlers.live(parts, recorder.record)
        handlers.link(linker, engine, comp, shape, provide)
        output = wasi.link(linker, engine, comp, shape.imports, provide)
        store = wasmtime.Store(engine)
        if output is not None:
            output.attach(store)
            recorder.before = lambda: output.drain(recorder.record)
        store.set_limits(memory_size=m.limits.memory)
        store.set_epoch_deadline(1)
        watchdog.watch(store, chain.flush)
        if fuel:
            store.set_fuel(m.limits.fuel)       # instantiation runs wasm too
        watchdog.arm(m.limits.call_timeout)      # so does a start function that never ends
        try:
            instance = linker.instantiate(store, comp)
        except wasmtime.WasmtimeError as e:
            if "exceeds memory limits" in str(e):
                raise Failure("memory", f"the component needs more linear memory than its limit "
                                        f"({m.limits.memory} bytes): {_first_line(e)}") from None
            if watchdog.reason is not None:
                raise Failure("timeout", f"instantiation exceeded the call time limit "
                                         f"({m.limits.call_timeout:g}s)") from None
            raise ActorFailed(f"instantiation failed: {_first_line(e)}") from None
        finally:
            watchdog.disarm()
            linker.close()

        resuming = config["mode"] == "resume" and resume.get("has_state")
        state = (rframes[0] if rframes else None) if resuming else init_state
        self.calls = calls = Calls(store, instance, watchdog, m.limits, recorder.record, chain.seal, shape, state)
        host.calls = calls
        loop.call_deadline = lambda: calls.deadline
        recorder.record("lifecycle/start", {
            "incarnation": config.get("incarnation", 0), "component": config["component"],
            "manifest": {"name": m.name, "version": m.version}, "mode": "resume" if resuming else "init",
            "state": state, "reason": config.get("reason"), "compiled": config.get("compiled"),
            "limits": records.held_limits(m.limits),
        })
        calls.call(ACTOR, "init", (self.actor_id,))
        chain.flush()
        loop.send_control({"k": "ready", "actor": self.actor_id})

    def _grant(self, m: manifests.Manifest, host: Host) -> None:
        """Builds the handlers the manifest grants, and learns which takes which mailbox kind."""
        registry = handlers.load()
        for granted in m.handlers:
            h = registry[granted.type](host, granted.config)
            self.handlers.append(h)
            for kind, counted in h.kinds.items():
                self.by_kind[kind] = (h, counted)
            for kind, take in h.notices().items():
                self.loop.on[kind] = _from_server(take)

    # ---- what arrives -----------------------------------------------------------------------

    def _accept(self, header: dict[str, Any], body: list[bytes], route: Route, _sock: zmq.Socket) -> None:
        mailbox = self.mailbox
        if mailbox is None:
            return
        item = Incoming(header["what"], header, body[0] if body else b"", route)
        taker = self.by_kind.get(item.what)
        if taker is None:
            mailbox.refuse(item, self._nobody_takes(item.what))
        elif taker[1] and not mailbox.closing and self._stopping():
            mailbox.refuse(item, f"actor {self.actor_id} is stopping")
        elif taker[1] and (too_large := self.limits.too_large(self.actor_id, len(item.payload))):
            mailbox.refuse(item, too_large)
        else:
            mailbox.admit(item, taker[1])

    def _stopping(self) -> bool:
        return bool(self.stop_reason or (self.watchdog and self.watchdog.stop_requested))

    def _nobody_takes(self, kind: str) -> str:
        owner = next((cls.type for cls in handlers.load().values() if kind in cls.kinds), None)
        if owner == "message-server":
            return f"actor {self.actor_id} does not take messages (its manifest grants no message-server handler)"
        if owner is not None:
            return f"actor {self.actor_id} cannot take {kind!r} (its manifest grants no {owner} handler)"
        return f"actor {self.actor_id} does not understand {kind!r}"

    def _heartbeat(self) -> dict[str, Any]:
        return {"events": self.recorder.chain.emitted if self.recorder else 0,
                "calls": self.calls.count if self.calls else 0, "mailbox": len(self.mailbox or ()),
                "dropped": self.loop.senders.dropped}

    def _get_state(self, header: dict[str, Any], *_: Any) -> None:
        """The state the calls so far made: it leaves the worker once the chain holds those calls,
        like a reply (seen before, a state could be lost with the worker and never happen)."""
        state = self.calls.state if self.calls is not None else None
        has = state is not None
        self.loop.reply(("control", None), {"k": "ok", "re": header["id"], "has_state": has}, *([state] if has else []))

    def _stop_actor(self, header: dict[str, Any], *_: Any) -> None:
        self.stop_reason = self.stop_reason or header["reason"]

    def _nack(self, header: dict[str, Any]) -> None:
        assert self.recorder is not None
        if not self.recorder.chain.on_nack(header["seq"], header["error"]):
            log.error("%s: the chain refused our events: %s", self.name, header["error"])
            self.stop_reason = self.stop_reason or "chain"

    def _shutdown(self, data: bytes | None) -> None:
        self.shutdown_data = data
        self.stop_reason = self.stop_reason or "shutdown"

    # ---- the loop and the end ---------------------------------------------------------------

    def run(self) -> int:
        """The main loop; returns the process exit status."""
        assert self.recorder is not None and self.watchdog is not None and self.mailbox is not None
        chain, watchdog, mailbox, loop, by_kind = self.recorder.chain, self.watchdog, self.mailbox, self.loop, \
            self.by_kind
        try:
            while True:
                if watchdog.stop_requested:
                    self.stop_reason = self.stop_reason or "stopped"
                if self.stop_reason:
                    break
                loop.pump(0 if mailbox and not chain.congested else HEARTBEAT_INTERVAL)
                # a burst is worked off several items per turn: the sockets are looked at again
                # after BURST items (a stop still gets in: it is checked between items)
                items = mailbox.items
                for _ in range(BURST):
                    if not items or chain.congested or self.stop_reason or watchdog.stop_requested:
                        break
                    item = mailbox.take()
                    ran = False
                    try:
                        by_kind[item.what][0].deliver(item)
                        ran = True
                    finally:
                        mailbox.done(item, ran)     # its call is in the chain, even one the actor failed in
                    loop.take_acks()        # what earlier calls of this burst answered may go now
                mailbox.acknowledge(now=not items)
        except Failure as f:
            # a call cut short by a stop request (it ran past the stop's grace, or gave up a wait
            # for it) ends as the stop it is, not as a failure (the call's error is in the chain)
            if not watchdog.stop_requested:
                return self._end(f"actor {self.actor_id} failed: {f.message}",
                                 {"k": "failed", "actor": self.actor_id, "reason": f.reason, "error": f.message})
        reason = self.stop_reason or "stopped"
        return self._end(f"actor {self.actor_id} stopped", {
            "k": "exiting", "actor": self.actor_id, "reason": reason, "has_data": self.shutdown_data is not None,
        }, stop_event={"reason": reason, "data": self.shutdown_data})

    def _end(self, why: str, words: dict[str, Any], stop_event: dict[str, Any] | None = None) -> int:
        """Refuses what waits, records the stop, waits for the chain, tells the server why."""
        assert self.recorder is not None and self.mailbox is not None
        self.recorder.final_report()
        self.mailbox.acknowledge(now=True)
        self.mailbox.closing = True
        self.loop.drain_inbox(LAST_READ)        # what waits in ZeroMQ's queue is refused too, not lost
        self.mailbox.drop(why)
        for h in self.handlers:
            h.close(why)
        if stop_event is not None:
            self.recorder.record("lifecycle/stop", stop_event)
        orphaned = os.getppid() != self.parent
        self.recorder.settle(ORPHAN_SETTLE_TIMEOUT if orphaned else SETTLE_TIMEOUT)
        if orphaned:
            return EXIT_NORMAL if stop_event is not None else EXIT_FAILED
        data = self.shutdown_data if stop_event is not None and self.shutdown_data is not None else None
        self.last_words(words, *([data] if data is not None else []))
        return EXIT_NORMAL if stop_event is not None else EXIT_FAILED

    def last_words(self, header: dict[str, Any], *frames: bytes) -> None:
        """Why this worker ends, told to the server before it exits: acknowledged, so the process's
        exit (which the server learns from the fork server) can never arrive ahead of its reason.
        A stop request (SIGTERM) is usually why we are here: it must not cut this wait short."""
        try:
            self.loop.control_request(header, *frames, timeout=LAST_WORDS_TIMEOUT, stoppable=False)
        except TheaterError:
            log.warning("%s: the server did not acknowledge why this worker ends", self.name)

    def close(self) -> None:
        self.loop.close()
        if self.peers is not None:
            self.peers.close()
        if self.gateway is not None:
            self.gateway.close()


def _from_server(take: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    """A handler's notice, taken from the server's control socket only."""
    def on(header: dict[str, Any], _body: list[bytes], route: Route, _sock: zmq.Socket) -> None:
        if route[0] == "control":
            take(header)
    return on


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 1


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def main(ctx: zmq.Context, home: Home, sockets: Sockets, actor_id: str, name: str, component_sha: str,
         fuel: bool, confine: Callable[[], None], engine: wasmtime.Engine,
         loaded: tuple[wc.Component, component.Shape] | None) -> int:
    """Runs one actor to its end; the process exit status."""
    actor = Actor(ctx, home, actor_id, name, sockets)
    try:
        try:
            actor.start(component_sha, fuel, confine, engine, loaded)
        except TheaterError as e:
            reason = e.reason if isinstance(e, Failure) else e.code
            log.info("%s: start failed: %s", name, e.message)
            if actor.recorder is not None:
                actor.recorder.settle(SETTLE_TIMEOUT)
            actor.last_words({"k": "failed", "actor": actor_id, "reason": f"start:{reason}", "error": e.message})
            return EXIT_START_FAILED
        return actor.run()
    except Exception as e:          # a bug in the worker: say so, rather than vanish
        log.exception("%s: internal error", name)
        actor.last_words({"k": "failed", "actor": actor_id, "reason": "internal",
                          "error": f"worker internal error: {type(e).__name__}: {e}"})
        return EXIT_FAILED
    finally:
        actor.close()


"""This actor's connections to other actors' inboxes.

The server's directory says where an actor listens (``resolve``); the connection is
then direct, worker to worker, so a request costs one hop each way. When an actor
stops or restarts the server tells everyone who resolved it (``peer``), and the next
message goes to the new address. A peer that does not keep up slows its senders down
(``send`` waits for room, ``worker.outgoing``). A peer acknowledges the one-way messages it
ran (``took``) and refuses those it turns away; when it stops or restarts, every message it
did neither for (still held here, or lost in its queues when its process was killed) is
recorded as not delivered (docs/isolation.md, Mailbox).

An actor that only received from a peer never resolved it, so nobody would tell it that peer
went: a channel it accepted would stay open after its opener's incarnation ended. So it asks
the server to watch that incarnation (``follow``: once per incarnation of a peer, not per
channel), named by the opener's ``chan_open``; the server answers ``peer`` at once if that
incarnation has already ended. Notices name the incarnation that ended, so a late one leaves
a later incarnation's connection (and channels) alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import zmq

from theater import protocol
from theater.errors import NotFound, Refused

from . import wire
from .loop import HEARTBEAT_INTERVAL, Loop
from .outgoing import Outgoing

# ZeroMQ's queue towards one peer (messages); more wait in this worker (worker.outgoing).
# Together with the peer's receive queue they let a burst flow while the peer catches up.
PEER_HWM = 1000
# How long a send or request waits for room at a peer when no call is running (at start-up).
NO_CALL_WAIT = 10.0


class Peers:
    def __init__(self, loop: Loop, actor_id: str, local: Callable[[str, dict[str, Any], bytes], None],
                 record: Callable[[str, Any], None], incarnation: int = 0) -> None:
        self.loop = loop
        self.actor_id = actor_id
        self.incarnation = incarnation           # this actor's own (the server's count of its workers)
        self.local = local                       # a message to this actor itself
        self.record = record
        self.outgoing: dict[str, Outgoing] = {}  # canonical id -> the connection and what waits for it
        self.aliases: dict[str, str] = {}        # as the actor wrote it -> canonical id
        self.by_sock: dict[zmq.Socket, Outgoing] = {}
        self.followed: dict[str, int] = {}       # peer -> its incarnation the server watches for us
        # told when a peer stops or restarts: its id, and the incarnation that ended (None: any)
        self.on_moved: list[Callable[[str, int | None], None]] = []

    def _connect(self, target: str) -> Outgoing | None:
        """The connection to ``target``'s inbox (made on first use); None when ``target`` is this
        actor itself, by id, name or prefix."""
        canonical = self.aliases.get(target, target)
        if canonical == self.actor_id:
            return None
        out = self.outgoing.get(canonical)
        if out is not None:
            return out
        header, _ = self.loop.control_request({"k": "resolve", "actor": target})
        canonical = self.aliases[target] = header["actor"]
        if canonical == self.actor_id:
            return None
        sock = self.loop.ctx.socket(zmq.DEALER)     # its routing id is libzmq's: see worker.senders
        sock.setsockopt(zmq.SNDHWM, PEER_HWM)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)     # what comes back: a reply, a refusal
        sock.connect(header["endpoint"])
        self.loop.poller.register(sock, zmq.POLLIN)
        self.loop.to_peers.add(sock)
        self.outgoing[canonical] = out = Outgoing(canonical, sock, self.loop.watch,
                                                  {"from": self.actor_id, "t": header["ticket"]},
                                                  header.get("incarnation"))
        self.by_sock[sock] = out
        return out

    def send(self, target: str, header: dict[str, Any], *frames: bytes) -> None:
        """Queues a one-way message; waits first (serving the sockets) while too many are on their
        way to the peer, within the running call's deadline."""
        out = self._connect(target)
        if out is None:
            self.local(header["what"], header, frames[0] if frames else b"")
            return
        if wire.readable(out.sock):   # a refusal may be waiting (we may be deep in one wasm call)
            self.loop.drain(out.sock)
        self.loop.take_acks()         # ... and acknowledgements that let earlier sends go
        if out.gone is not None:      # the peer went meanwhile (a record that waited served a notice)
            out = self._connect(target)
            assert out is not None
        if out.crowded:
            self._wait_for_room(out, target)
        size = sum(map(len, frames))
        out.accepted(size)
        # leaves once this call's events are durable, in order with every other effect
        assert self.loop.chain is not None
        self.loop.chain.hold(partial(out.put, protocol.encode({**header, **out.stamp}, *frames), size))

    def _wait_for_room(self, out: Outgoing, target: str) -> None:
        """Serves the sockets until half of what waits for the peer is gone; fails only when the
        call's time is up, the actor is asked to stop, or the peer stops or restarts."""
        loop, chain = self.loop, self.loop.chain
        assert chain is not None
        self.record("limit/waiting", {"to": out.peer, "queued": out.unsent})
        deadline = loop.call_deadline() or time.monotonic() + NO_CALL_WAIT
        while not out.roomy or out.gone is not None:     # gone, it counts nothing: roomy
            chain.seal()              # what is held for the chain goes as soon as it is safe
            if out.gone is not None:
                raise NotFound(out.gone)
            if loop.watchdog is not None and loop.watchdog.stop_requested:
                raise Refused("the actor is stopping")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = (f"actor {target} is not taking messages: {out.unsent} sent to it are still "
                       f"waiting as this call's time runs out")
                self.record("limit/refused", {"to": out.peer, "error": why})
                raise Refused(why)
            loop.pump(min(remaining, HEARTBEAT_INTERVAL))

    def refused(self, sock: zmq.Socket, why: str, count: int) -> None:
        """The peer on ``sock`` turned messages away (it is stopping, or they were too large):
        recorded, as many as we sent it at most; a refusal of nothing is dropped (worker.senders)."""
        out = self.by_sock.get(sock)
        counted = out.answered(count) if out is not None else 0
        if out is None or not counted:
            self.loop.senders.drop("refusal from a peer of messages it was never sent")
            return
        self.record("limit/refused", {"to": out.peer, "error": why, "messages": counted})

    def took(self, sock: zmq.Socket, count: int) -> None:
        """The peer on ``sock`` acknowledges ``count`` of our one-way messages: it ran them."""
        out = self.by_sock.get(sock)
        if out is None or not out.answered(count):
            self.loop.senders.drop("acknowledgement from a peer of messages it was never sent")

    def call(self, target: str, header: dict[str, Any], *frames: bytes) -> tuple[dict[str, Any], list[bytes]]:
        """Sends a request or channel open and waits for its reply, within the current call's deadline."""
        out = self._connect(target)
        if out is None:
            raise Refused("an actor cannot request itself: it is busy running this call")
        canonical, sock = out.peer, out.sock
        self.loop.before_effect()       # nothing leaves ahead of the events that led to it
        msg = protocol.encode({**header, **out.stamp}, *frames)
        while True:
            try:
                if not out.queue:       # ... nor ahead of the messages sent to the peer before it
                    wire.send(sock, msg)
                    break
            except zmq.Again:
                pass
            # the caller waits for the reply anyway: wait for room first
            deadline = self.loop.call_deadline()
            if deadline is None or time.monotonic() >= deadline:
                raise Refused(f"actor {target} is not keeping up ({PEER_HWM} messages queued to it)") from None
            self.loop.pump(0.001)
            _check(out)
        return self.loop.wait_reply(header["rid"], check=lambda: _check(out), sock=sock, peer=canonical)

    def incarnation_of(self, actor_id: str) -> int | None:
        """The incarnation of ``actor_id`` our connection reaches (None: none, or not known)."""
        out = self.outgoing.get(actor_id)
        return out.incarnation if out is not None else None

    def follow(self, actor_id: str, incarnation: int) -> None:
        """Asks the server to tell us (``peer``) when this incarnation of ``actor_id`` ends, unless
        it does already: we resolved that incarnation, or asked before."""
        if actor_id == self.actor_id or incarnation in (self.followed.get(actor_id), self.incarnation_of(actor_id)):
            return
        self.followed[actor_id] = incarnation
        self.loop.send_control({"k": "watch_peer", "actor": actor_id, "incarnation": incarnation})

    def moved(self, actor_id: str, incarnation: int | None = None) -> None:
        """The server says this incarnation of the actor (None: whichever we knew) stopped or
        restarted: drop the connection. Messages it did not take are lost with it: recorded (what
        it said before it went is read first). What concerns a later incarnation stays (the
        notice answered a ``follow`` that came late)."""
        if not later(self.followed.get(actor_id), incarnation):
            self.followed.pop(actor_id, None)
        out = self.outgoing.get(actor_id)
        if out is not None and not later(out.incarnation, incarnation):
            del self.outgoing[actor_id]
            if wire.readable(out.sock):
                self.loop.drain(out.sock)
            why = (f"actor {actor_id} stopped or restarted before it took (or acknowledged taking) the messages "
                   f"sent to it")
            lost = out.lose(why)
            if lost:
                self.record("limit/refused", {"to": actor_id, "error": why, "messages": lost})
            self.loop.poller.unregister(out.sock)
            self.loop.to_peers.discard(out.sock)
            del self.by_sock[out.sock]
            out.sock.close(linger=0)
        if actor_id not in self.outgoing:
            for alias in [a for a, c in self.aliases.items() if c == actor_id]:
                del self.aliases[alias]
        for tell in self.on_moved:
            tell(actor_id, incarnation)

    def close(self) -> None:
        for out in self.outgoing.values():
            out.sock.close()


def later(known: int | None, ended: int | None) -> bool:
    """Whether incarnation ``known`` comes after the one a notice says ``ended`` (None: not known;
    a notice naming none ended whichever we knew)."""
    return known is not None and ended is not None and known > ended


def _check(out: Outgoing) -> None:
    """Raises if the peer a request waits on stopped or restarted (``Peers.moved``): its answer
    will not come. By the connection, not the peer's id: a set of ids of peers gone grew by
    one for every peer that ever stopped, for the worker's life."""
    if out.gone is not None:
        raise NotFound(f"actor {out.peer} stopped before it answered")

"""This actor's connections to other actors' inboxes.

The server's directory says where an actor listens (``resolve``); the connection is
then direct, worker to worker, so a request costs one hop each way. When an actor
stops or restarts the server tells everyone who resolved it (``peer``), and the next
message goes to the new address.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import zmq

from theater import protocol
from theater.errors import NotFound, Refused

from . import wire
from .loop import Loop

# Messages queued towards one peer before `send` refuses: the peer's mailbox limit is
# the real bound; this only stops a sender from buffering without end in its own memory.
PEER_HWM = 10_000
# After a peer refused a message (mailbox full), sends to it fail at once for this long.
REFUSED_FOR = 0.05


class Peers:
    def __init__(self, loop: Loop, actor_id: str, local: Callable[[str, dict[str, Any], bytes], None],
                 record: Callable[[str, Any], None]) -> None:
        self.loop = loop
        self.actor_id = actor_id
        self.local = local                       # a message to this actor itself
        self.record = record
        self.sockets: dict[str, zmq.Socket] = {}
        self.aliases: dict[str, str] = {}        # as the actor wrote it -> canonical id
        self.down: set[str] = set()              # peers reported gone while we waited on them
        self.full: dict[str, tuple[float, str]] = {}   # peer -> (refusing until, why)

    def _socket(self, target: str) -> tuple[str, zmq.Socket]:
        canonical = self.aliases.get(target, target)
        sock = self.sockets.get(canonical)
        if sock is not None:
            return canonical, sock
        header, _ = self.loop.control_request({"k": "resolve", "actor": target})
        canonical = header["actor"]
        if canonical == self.actor_id:
            raise Refused(f"actor {canonical} is this actor itself; it cannot wait on its own reply")
        self.aliases[target] = canonical
        sock = self.loop.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.actor_id.encode())
        sock.setsockopt(zmq.SNDHWM, PEER_HWM)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(header["endpoint"])
        self.loop.poller.register(sock, zmq.POLLIN)
        self.sockets[canonical] = sock
        self.down.discard(canonical)
        return canonical, sock

    def send(self, target: str, header: dict[str, Any], *frames: bytes) -> None:
        if target == self.actor_id:
            self.local(header["what"], header, frames[0] if frames else b"")
            return
        canonical, sock = self._socket(target)
        if wire.readable(sock):       # a refusal may be waiting (we may be deep in one wasm call)
            self.loop.drain(sock)
        self.loop.take_acks()         # ... and acknowledgements that let earlier sends go
        until, why = self.full.get(canonical, (0.0, ""))
        if until > time.monotonic():
            raise Refused(why)
        # leaves with the batch holding this send's event, in order with every other effect
        def failed(e: zmq.ZMQError) -> None:       # else the peer restarted meanwhile: lost like any in flight
            if isinstance(e, zmq.Again):
                self.refused(sock, f"actor {target} is not keeping up ({PEER_HWM} messages queued to it)")
        # leaves once this call's events are durable, in order with every other effect
        assert self.loop.chain is not None
        self.loop.chain.hold(sock, protocol.encode(header, *frames), failed)

    def refused(self, sock: zmq.Socket, why: str) -> None:
        """The peer on ``sock`` turned a message away: fail sends to it for a moment, and record it."""
        peer = next((a for a, s in self.sockets.items() if s is sock), None)
        if peer is None:
            return
        now = time.monotonic()
        if self.full.get(peer, (0.0, ""))[0] < now:       # a new episode: record it
            self.record("limit/refused", {"to": peer, "error": why})
        self.full[peer] = (now + REFUSED_FOR, why)

    def call(self, target: str, header: dict[str, Any], *frames: bytes) -> tuple[dict[str, Any], list[bytes]]:
        """Sends a request or channel open and waits for its reply, within the current call's deadline."""
        if target == self.actor_id:
            raise Refused("an actor cannot request itself: it is busy running this call")
        canonical, sock = self._socket(target)
        self.loop.before_effect()       # nothing leaves ahead of the events that led to it
        msg = protocol.encode(header, *frames)
        while True:
            try:
                wire.send(sock, msg)
                break
            except zmq.Again:       # the caller waits for the reply anyway: wait for room first
                deadline = self.loop.call_deadline()
                if deadline is None or time.monotonic() >= deadline:
                    raise Refused(f"actor {target} is not keeping up ({PEER_HWM} messages queued to it)") from None
                sock.poll(1, zmq.POLLOUT)
                self.loop.pump(0)
                self.check(canonical)
        return self.loop.wait_reply(header["rid"], check=lambda: self.check(canonical), sock=sock, peer=canonical)

    def moved(self, actor_id: str) -> None:
        """The server says this actor stopped or restarted: drop the connection."""
        sock = self.sockets.pop(actor_id, None)
        if sock is not None:
            self.loop.poller.unregister(sock)
            sock.close(linger=0)
            self.down.add(actor_id)
        for alias in [a for a, c in self.aliases.items() if c == actor_id]:
            del self.aliases[alias]

    def check(self, actor_id: str) -> None:
        if actor_id in self.down:
            raise NotFound(f"actor {actor_id} stopped before it answered")

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()

"""What arrives at the server, decoded and handed to the part it is for.

From clients (the management socket): a request for the API. From workers (the control socket):
answers to what the server asked, a worker's own lifecycle news, its requests about peers
(``resolve``, ``watch_peer``) and children, and what it writes on channels whose other end is a client. From
the chain: answers. A message that does not decode is logged and dropped, and answered with the
reason if it is a client's, or a worker's request whose id can be read (supervisor.gate); a
worker is known by the connection its hello came on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from theater import protocol
from theater.bucket import Bucket
from theater.errors import ProtocolError, Refused, TheaterError

from . import api, channels, children
from .directory import Directory
from .gate import Gate
from .registry import ActorRecord
from .services import Services

log = logging.getLogger("theater.server")

# What a worker may ask of the server (resolve, watch_peer, its children), per second and at
# once: the server has one thread, and a flood of asks from one actor (a loop resolving a name
# nobody has, or a compromised worker) took it from every other. Those over it are refused.
ASKS_PER_SECOND = 1000.0
ASKS_AT_ONCE = 2000.0
ASKS = frozenset({"resolve", "watch_peer", *children.KINDS})
# A worker's news of itself (supervision.on_worker). Any other kind (a client's, the chain's, the
# gateway's) is no worker's: dropped, and answered if it is a request, so that its call does not wait.
NEWS = frozenset({"hello", "ready", "failed", "exiting", "heartbeat"})


class Inbox:
    def __init__(self, services: Services, directory: Directory, gate: Gate,
                 hello: Callable[[int], None] = lambda _pid: None) -> None:
        self.services = services
        self.hello = hello              # told each worker's pid as it says hello (supervisor.callers)
        self.outbox = services.outbox
        self.registry = services.registry
        self.supervision = services.supervision
        self.directory = directory
        self.gate = gate

    def from_client(self, frames: list[bytes]) -> None:
        client, body = frames[0], frames[1:]
        try:
            header, data = protocol.decode(body)
        except ProtocolError as e:
            self.outbox.fail(client, protocol.request_id(body), e)
            return
        handler = api.HANDLERS.get(header["k"])
        if handler is None:
            self.outbox.fail(client, header.get("id", ""), ProtocolError(f"{header['k']!r} is not a client request"))
            return
        if "id" in header:          # a request (a notice, such as channel_ack, is answered by nobody)
            self.outbox.received(client, header["id"], header["k"])
        req = api.Request(self.services, client, header.get("id", ""), header, data)
        try:
            handler(req)
        except TheaterError as e:
            req.fail(e)
        except Exception as e:                  # a bug: logged, and the client still gets an answer
            log.exception("theater-server: internal error handling %s", header["k"])
            req.fail(TheaterError(f"internal error in the server: {type(e).__name__}: {e}"))

    def from_worker(self, frames: list[Any]) -> None:
        """A message from a worker (as Frames: the gate attributes it by the sender's pid)."""
        admitted = self.gate.admit(frames)
        if admitted is not None:
            self.worker_message(*admitted)

    def worker_message(self, rec: ActorRecord, header: dict[str, Any], data: list[bytes]) -> None:
        """A message from ``rec``'s worker."""
        rec.run.last_seen = now = time.monotonic()
        kind = header["k"]
        if kind in ASKS and not self._within_budget(rec, now):
            if "id" in header:
                self.outbox.to_worker(rec.actor_id, protocol.error(header["id"], Refused(
                    f"over its rate of requests to the server ({ASKS_PER_SECOND:g} a second)")))
            return
        if kind in ("ok", "error", "reply"):
            self.outbox.answered(header["rid"] if kind == "reply" else header["re"], header, data, by=rec.actor_id)
        elif kind == "msg":
            channels.relay(self.outbox, rec.actor_id, header, data)
        elif kind == "resolve":
            self.directory.resolve(rec, header)
        elif kind == "watch_peer":
            self.directory.follow(rec, header)
        elif kind in children.KINDS:
            if rec.manifest.has_handler("supervisor"):
                children.handle(self.services, rec, header, data)
            else:
                self.outbox.to_worker(rec.actor_id, protocol.error(header["id"], Refused(
                    "this actor's manifest grants no supervisor handler")))
        elif kind in NEWS:
            if kind == "hello":
                self.hello(rec.run.pid or header["pid"])
            self.supervision.on_worker(rec, header, data)
        elif "id" in header:
            self.outbox.to_worker(rec.actor_id, protocol.error(header["id"], ProtocolError(
                f"{kind!r} is not a worker request")))

    @staticmethod
    def _within_budget(rec: ActorRecord, now: float) -> bool:
        """Takes one of the incarnation's ask tokens (refilled at ASKS_PER_SECOND), if it has one."""
        if rec.run.asks is None:
            rec.run.asks = Bucket(ASKS_PER_SECOND, now, ASKS_AT_ONCE / ASKS_PER_SECOND)
        if rec.run.asks.allows(1, now):
            return True
        refused = rec.run.stats["asks_refused"] = rec.run.stats.get("asks_refused", 0) + 1
        if refused % 1000 == 1:
            log.warning("actor %s (%s): over its rate of requests to the server, refused (%d so far)",
                        rec.actor_id, rec.name, refused)
        return False

    def from_chain(self, frames: list[bytes]) -> None:
        try:
            header, data = protocol.decode(frames)
        except ProtocolError as e:
            log.warning("malformed message from the chain: %s", e)
            return
        if header["k"] in ("ok", "error"):
            self.outbox.answered(header["re"], header, data)
        elif header["k"] == "chain_status":
            error = header.get("error")
            if error != self.services.chain_error:
                if error:
                    log.error("the chain refuses new events: %s; actors wait until it can write", error)
                else:
                    log.warning("the chain stores events again")
                self.services.chain_error = error if isinstance(error, str) else None

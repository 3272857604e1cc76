"""Everything the server sends, and what it waits for: messages out, pending requests, timers.

The server's parts (supervision, the directory, the relay, children, the management API)
talk to clients, workers and the chain only through this. A request to a worker or the chain
is parked in ``pending`` with what to do with its answer (forward it to a client, or a
continuation), and is given up on when the worker dies, the chain restarts (queries), or
``PENDING_TIMEOUT`` passes: its continuation or client always hears back. Timers run
functions later on the server's one thread. Nothing here blocks.

Every client request is answered through ``reply`` or ``fail``; when someone listens
(``on_answered``: the metrics), the time from its arrival (``received``) to its answer is told.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from theater import protocol
from theater.errors import TheaterError, Timeout, from_wire
from theater.events import encode_data
from theater.ids import new_request_id

from .channels import Channels
from .registry import Registry

log = logging.getLogger("theater.server")

# A forwarded request with no answer after this long is failed back to its client; the
# worker's own call timeout normally answers first.
PENDING_TIMEOUT = 300.0

Then = Callable[[dict[str, Any], list[bytes]], None]


@dataclass
class Pending:
    """A request forwarded to a worker or the chain, waiting for its answer."""

    client: bytes | None                       # management identity to answer, if any
    client_id: str
    actor: str | None = None                   # the worker asked, to fail it if the worker dies
    then: Then | None = None
    deadline: float = 0.0
    retry: list[bytes] | None = None           # a chain record, sent again if the chain restarts


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Outbox:
    def __init__(self, registry: Registry, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.clock = clock
        self.clients: zmq.Socket | None = None       # management ROUTER
        self.workers: zmq.Socket | None = None       # control ROUTER
        self.chain: zmq.Socket | None = None         # DEALER to the chain process
        self.pending: dict[str, Pending] = {}
        self.channels = Channels()                   # those with a client at one end
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._ids = itertools.count()
        self.on_answered: Callable[[str, float], None] | None = None     # (request kind, seconds)
        self._arrivals: dict[tuple[bytes, str], tuple[str, float]] = {}

    def new_id(self) -> str:
        return f"s{next(self._ids)}-{os.urandom(4).hex()}"      # not guessable from the last one

    # ---- timers ----------------------------------------------------------------------------

    def later(self, delay: float, fn: Callable[[], None]) -> Timer:
        t = Timer(self.clock() + delay, next(self._seq), fn)
        heapq.heappush(self._timers, t)
        return t

    def next_timer(self) -> float | None:
        """When the next timer is due (clock time), if any is set."""
        live = [t.when for t in self._timers if not t.cancelled]
        return min(live) if live else None

    def run_timers(self, guard: Callable[[Callable[[], None]], None]) -> float:
        """Runs due timers (each through ``guard``); returns seconds until the next one."""
        while self._timers:
            t = self._timers[0]
            if t.cancelled:
                heapq.heappop(self._timers)
                continue
            delay = t.when - self.clock()
            if delay > 0:
                return delay
            heapq.heappop(self._timers)
            guard(t.fn)
        return 1.0

    # ---- to clients ------------------------------------------------------------------------

    def received(self, client: bytes, request_id: str, kind: str) -> None:
        """A client request arrived: timed until its answer, when someone listens."""
        if self.on_answered is not None:
            self._arrivals[(client, request_id)] = (kind, self.clock())

    def reply(self, client: bytes, request_id: str, fields: dict[str, Any], *frames: bytes) -> None:
        self._answered(client, request_id)
        self.push(client, protocol.ok(request_id, **fields), *frames)

    def fail(self, client: bytes, request_id: str, exc: TheaterError) -> None:
        self._answered(client, request_id)
        self.push(client, protocol.error(request_id, exc))

    def _answered(self, client: bytes, request_id: str) -> None:
        if self.on_answered is not None and (arrived := self._arrivals.pop((client, request_id), None)):
            self.on_answered(arrived[0], self.clock() - arrived[1])

    def push(self, client: bytes, header: dict[str, Any], *frames: bytes) -> bool:
        """Sends to a client without blocking; False if it is gone or not reading."""
        try:
            self.send_client(client, header, *frames)
            return True
        except zmq.ZMQError:
            return False

    def send_client(self, client: bytes, header: dict[str, Any], *frames: bytes) -> None:
        """Sends to a client; raises zmq.Again when it is not reading, ZMQError when it is gone."""
        assert self.clients is not None
        self.clients.send_multipart([client, *protocol.encode(header, *frames)], zmq.NOBLOCK)

    # ---- to workers and the chain ------------------------------------------------------------

    def to_worker(self, actor_id: str, header: dict[str, Any], *frames: bytes) -> bool:
        rec = self.registry.get(actor_id)
        ident = rec.run.ident if rec is not None else None
        if ident is None or self.workers is None:
            return False
        try:
            self.workers.send_multipart([ident, *protocol.encode(header, *frames)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as e:
            log.debug("message to worker %s dropped: %s", actor_id, e)
            return False

    def ask_worker(self, actor_id: str, header: dict[str, Any], *frames: bytes, client: bytes | None = None,
                   client_id: str = "", then: Then | None = None) -> str:
        """Sends a request to a worker; its answer goes to ``client`` (or ``then``). Its id."""
        rid = new_request_id()     # the actor sees it as the request id: unique, not a counter
        header = {**header, "rid" if header["k"] == "msg" else "id": rid}
        self.pending[rid] = Pending(client, client_id, actor_id, then, self.clock() + PENDING_TIMEOUT)
        if not self.to_worker(actor_id, header, *frames):
            self.give_up(self.pending.pop(rid), TheaterError(f"actor {actor_id} is not reachable"))
        return rid

    def ask_chain(self, header: dict[str, Any], *frames: bytes, client: bytes | None = None, client_id: str = "",
                  then: Then | None = None) -> str:
        """A query or record for the chain. Records survive a chain restart (sent again: at
        least once); queries fail back to their client, who may ask again. Its id."""
        assert self.chain is not None
        rid = self.new_id()
        msg = protocol.encode({**header, "id": rid}, *frames)
        self.pending[rid] = Pending(client, client_id, None, then, self.clock() + PENDING_TIMEOUT,
                                    retry=msg if header["k"] == "record" else None)
        self.chain.send_multipart(msg)
        return rid

    def supersede(self, rid: str | None, err: TheaterError) -> None:
        """Gives up on ``rid`` now, if it still waits: a later request took its place."""
        if rid is not None and (p := self.pending.pop(rid, None)) is not None:
            self.give_up(p, err)

    def record(self, actor_id: str, event_type: str, value: dict[str, Any], then: Callable[[], None]) -> None:
        """Appends a server-side event to an actor's chain, then continues (once it is durable)."""
        def done(header: dict[str, Any], _data: list[bytes]) -> None:
            if header["k"] == "error":
                log.error("could not record %s for %s: %s", event_type, actor_id, header.get("error"))
            then()
        self.ask_chain({"k": "record", "actor": actor_id, "type": event_type}, encode_data(value), then=done)

    def tell_chain(self, header: dict[str, Any]) -> None:
        """A notice for the chain (no answer): bind and unbind."""
        assert self.chain is not None
        try:
            self.chain.send_multipart(protocol.encode(header), zmq.NOBLOCK)
        except zmq.Again:
            log.error("chain socket full: %s for %s dropped", header["k"], header.get("actor"))

    # ---- answers -----------------------------------------------------------------------------

    def answered(self, rid: str, header: dict[str, Any], data: list[bytes], by: str | None = None) -> None:
        """An answer from the worker of actor ``by`` or (None) the chain: to its continuation, or
        to its client. Only the one asked may answer: a worker cannot answer what the server asked
        the chain (a record it would fake as stored) or another actor."""
        p = self.pending.get(rid)
        if p is None or p.actor != by:
            return
        del self.pending[rid]
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

    def fail_pending_for(self, actor_id: str, reason: str) -> None:
        """An incarnation ended: what its clients wait for fails, and their channels to it close
        (the next incarnation knows none of them: what they sent on would be dropped unread)."""
        for rid, p in list(self.pending.items()):
            if p.actor == actor_id:
                del self.pending[rid]
                self.give_up(p, TheaterError(reason))
        for ch in self.channels.of_actor(actor_id):
            chan = self.channels.pop(ch)
            assert chan is not None
            self.push(chan.client, {"k": "channel_closed", "channel": ch})

    def expire(self) -> None:
        """Gives up on requests past their deadline (and stops timing requests never answered)."""
        now = self.clock()
        if self._arrivals:
            self._arrivals = {k: v for k, v in self._arrivals.items() if now - v[1] < PENDING_TIMEOUT}
        for rid, p in list(self.pending.items()):
            if now > p.deadline:
                del self.pending[rid]
                self.give_up(p, Timeout("no answer in time"))

    def chain_lost(self) -> None:
        """The chain process died: the queries it was answering are lost (records are kept)."""
        for rid, p in list(self.pending.items()):
            if p.actor is None and p.retry is None:
                del self.pending[rid]
                self.give_up(p, TheaterError("the chain process restarted; try again"))

    def chain_back(self) -> None:
        """A new chain process: the records it never acknowledged go again."""
        assert self.chain is not None
        for p in self.pending.values():
            if p.retry is not None:
                p.deadline = self.clock() + PENDING_TIMEOUT
                self.chain.send_multipart(p.retry)

    def give_up(self, p: Pending, err: TheaterError) -> None:
        """No answer will come for ``p``: its continuation or its client hears why."""
        if p.then is not None:
            p.then({"k": "error", **err.to_wire()}, [])
        elif p.client is not None:
            self.fail(p.client, p.client_id, err)

"""The chain process's loop: take events, commit them in groups, acknowledge, publish, answer.

Workers ship their events (``append``) on plain unix streams (``run/chain-stream.sock``,
``streams``), and hear their acknowledgements there. One ROUTER (``run/chain.sock``) takes
``resume`` and queries from workers, ``record``, ``bind`` and queries from the server. Each
message is attributed by its sender's pid as the kernel reports it, and checked against
what that process may do (``access``); a worker's stream is read no faster than its actor's
``[limits]`` allow, with room to spare (``rates``: an honest worker slows itself first). One
XPUB (``run/events.sock``) publishes each stored event under the topic ``actor.<id>`` to
whoever subscribed (observers only: PUB drops what a slow subscriber cannot take, and
subscribers catch up from the store by sequence number).

Events are staged as they arrive and committed in groups (one transaction, signed), and
only then acknowledged: the group commit that makes durable, signed events cheap. A group
is committed ``COMMIT_DELAY`` after its first event, at once when someone waits on it (a
query, a server record, a worker's ``sync``: an effect of the worker's waits on it), or
when it reaches ``MAX_BATCH`` events. Acknowledgements nobody waits on are lazy (``acks``).

When the database refuses a commit (a full disk), the group is rolled back and refused
(``nack`` "unavailable: <why>"; workers keep their events and send them again), the server
is told why (``chain_status``), and new events are refused at once, but for one attempt
every ``RETRY_WRITE``; the first commit that succeeds ends it. The process stays up.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from typing import Any

import orjson
import zmq

from theater import keys, peercred, protocol
from theater._histogram import Histogram
from theater._logging import Sparse
from theater.chaindb import ChainReader
from theater.errors import ProtocolError, Refused
from theater.paths import Home

from .access import LOG_EVERY, Access
from .acks import Acks
from .publisher import Publisher
from .queries import Queries
from .rates import Rates
from .store import ChainStore, Rejected, Unwritable
from .streams import StreamPeer, Streams

log = logging.getLogger("theater.chain")

# Events per group commit: bounds one transaction's latency (~10 ms) under heavy load.
MAX_BATCH = 4000
# Messages read from the ROUTER in one turn (binds, resumes, records, queries).
ROUTER_TURN = 1000
# How long the first event of a group waits for others before the group is committed.
COMMIT_DELAY = 0.005
# After SIGTERM, keep serving until no event has arrived for this long (workers stopping
# at the same time are still flushing), but never longer than STOP_MAX. The server's
# `shutdown` comes once every worker is gone: the chain stops as soon as it has read it.
STOP_IDLE = 0.3
STOP_MAX = 3.0
# Seconds one group commit takes (link, sign, write, fsync), counted for the `stats` query
# (the server's metrics): a millisecond or so here, more on a slow or busy disk.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RETRY_WRITE = 1.0       # while the database refuses writes, one commit is tried at most this often
# How often streams of no actor's worker (streams.UNBOUND_FOR) and idle heads (store.forget_idle) go.
SWEEP_EVERY = 1.0

Cred = tuple[int, int, int] | None


class ChainService:
    def __init__(self, home: Home, parent: int | None = None, durability: str = "process") -> None:
        self.home = home
        self.parent = parent
        self.key = keys.load_or_create(home)
        self.store = ChainStore(home.chains_db, self.key, durability)
        self.queries = Queries(self.store, ChainReader(home.chains_db), self.key, self._stats)
        self.access = Access(parent)
        self.rates = Rates()
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.RCVHWM, 100_000)
        _bind(self.router, home.chain_endpoint)
        self.publisher = Publisher(self.ctx.socket(zmq.XPUB), self.access.is_server)
        _bind(self.publisher.pub, home.events_endpoint)
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.poller.register(self.publisher.pub, zmq.POLLIN)
        self.streams = Streams(home.chain_stream, self.poller)
        self.acks = Acks()
        self.staged = 0                     # events staged, not yet committed
        self.staged_since = 0.0
        self.stopping_since: float | None = None
        self.stop_idle = STOP_IDLE
        self.last_input = time.monotonic()
        self.committed = 0                  # events made durable since this process started
        self.commit_seconds = Histogram(COMMIT_BUCKETS)
        self.server_peer: bytes | None = None     # the server's routing id, for chain_status
        self.unwritable: str | None = None        # why the database refuses writes, while it does
        self.unwritable_since = 0.0
        self.retry_at = 0.0
        self.writable = True                      # this turn may write
        self.sweep_at = 0.0                       # strangers' streams are looked for then
        self.warnings = Sparse(log, LOG_EVERY)    # what a worker could have logged at every message

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log.info("chain: serving %s", self.home.chains_db)
        while True:
            if self.stopping_since is not None:
                now = time.monotonic()
                if now - self.last_input > self.stop_idle or now - self.stopping_since > STOP_MAX:
                    break
            now = time.monotonic()
            for pid in self.streams.tick(now):      # a hold kept a worker waiting
                self.rates.kept(self.access.actor_of.get(pid), pid, now)
            if now >= self.sweep_at:
                self._sweep(now)
            self.streams.pause(self.unwritable is not None and now < self.retry_at)
            router = False
            for sock, _ in self.poller.poll(self._timeout()):
                if sock is self.publisher.pub:
                    self.publisher.subscriptions()
                elif sock is self.router:
                    router = True
                else:
                    self.streams.ready(sock)
            if router or self.streams.inbox:
                self._drain(router)
            # the group commits when due; meanwhile the poll above stays awake for a worker that
            # waits on it (a sync commits at once: sleeping here held it up to COMMIT_DELAY)
            if self.staged and time.monotonic() >= self.staged_since + COMMIT_DELAY:
                self._commit()
            self._acknowledge()
            for p in self.access.expired(time.monotonic()):
                self._refuse(p.peer, orjson.loads(p.frames[0]), "its process is no actor's worker")
        self.streams.tick(math.inf)         # what a slowed worker wrote is taken too
        self.streams.read_all()
        self._drain(router=False)
        self._commit()
        self._acknowledge(everything=True)
        self.streams.close()
        self.store.close()
        self.ctx.destroy(linger=500)
        log.info("chain: stopped")

    def _sweep(self, now: float) -> None:
        """What no worker holds any more: strangers' streams, the heads of actors without one."""
        self.streams.sweep(now, self.access.actor_of.__contains__)
        self.store.forget_idle(self.access.pid_of)
        self.sweep_at = now + SWEEP_EVERY

    def _timeout(self) -> int:
        """Milliseconds until the next commit, acknowledgement or parked message is due."""
        due = [time.monotonic() + (0.1 if self.stopping_since is not None else 1.0)]
        if self.staged:
            due.append(self.staged_since + COMMIT_DELAY)
        later = (self.acks.next_due(), self.access.next_expiry(), self.streams.next_release(),
                 self.retry_at if self.unwritable is not None else None)
        due += [at for at in later if at is not None]
        return max(0, math.ceil((min(due) - time.monotonic()) * 1000))

    def _on_term(self, *_: Any) -> None:
        """SIGTERM counts only once the server is gone (its death signal); while it lives, the
        server stops us itself, after the last actor's events (a whole process group may get
        SIGTERM at once: Ctrl-C in a shell, systemd's KillMode=control-group)."""
        if self.parent is not None and os.getppid() == self.parent:
            log.info("chain: SIGTERM ignored; the server will stop the chain after its actors")
            return
        self.stop()

    def stop(self, idle: float = STOP_IDLE) -> None:
        """Stops once nothing has come for ``idle`` seconds (see STOP_IDLE)."""
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        self.stop_idle = min(self.stop_idle, idle)

    def _drain(self, router: bool) -> None:
        """Stages everything waiting (the streams' events, then ``router``'s messages); commits
        if anyone waits on it, then answers."""
        later: list[tuple[bytes, dict[str, Any], list[bytes]]] = []       # records and queries
        self.writable = self._writable()        # one try per turn while the database refuses
        if self.writable and self.unwritable is not None:   # a try: read all that waited (one read a
            self.streams.read_all()                         # try took a minute to reach a worker's probe)
        self._from_streams(later)
        for _ in range(ROUTER_TURN if router else 0):      # however many events the streams brought
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self.last_input = time.monotonic()
            cred = peercred.credentials(frames[0])
            self._handle(frames[0].bytes, cred, [f.bytes for f in frames[1:]], later)
        if later and not self.streams.paused:   # what a worker wrote before these were sent comes first
            self.streams.read_all()
            self._from_streams(later)
        # records (lifecycle events from the server) are linked at the head, after the workers' events
        recorded: dict[str, int] = {}
        for _peer, header, data in later:
            if header["k"] == "record" and self.writable:
                recorded[header["id"]] = self.store.append(header["actor"], header["type"], data[0], time.time_ns())
                self._stage(1)
        if later or self.acks.waited or self.staged >= MAX_BATCH:
            self._commit()
        for peer, header, _data in later:
            if header["k"] != "record":
                reply, frames = self.queries.reply(header)
                self._send(peer, reply, *frames)
            elif self.unwritable is None and header["id"] in recorded:
                self._send(peer, protocol.ok(header["id"], seq=recorded[header["id"]]))
            else:
                self._send(peer, protocol.error(header["id"], Refused(f"unavailable: {self.unwritable}")))

    def _from_streams(self, later: list[tuple[bytes, dict[str, Any], list[bytes]]]) -> None:
        for peer, cred, body in self.streams.take():
            self.last_input = time.monotonic()
            self._handle(peer, cred, body, later)

    def _handle(self, peer: bytes, cred: Cred, body: list[bytes],
                later: list[tuple[bytes, dict[str, Any], list[bytes]]]) -> None:
        stream = isinstance(peer, StreamPeer)
        try:
            header, data = protocol.decode(body)
        except ProtocolError as e:
            if stream:
                self._pace(peer, cred, body, None)
            self._send(peer, {"k": "error", "re": protocol.request_id(body), **e.to_wire()})
            return
        if stream:
            self._pace(peer, cred, body, header)
        why = self.access.check(cred, header, stream)
        if why == "park" and cred is not None and self.access.park(cred, peer, body):
            return
        if why is not None:
            self.access.refused(cred, header["k"], why)
            self._refuse(peer, header, why)
            return
        kind = header["k"]
        if self.access.is_server(cred):
            self.server_peer = peer
        if kind == "append":
            self._stage(self._append(peer, header, data))
        elif kind in ("bind", "unbind"):
            # what a dead worker wrote is in its stream before the server can see it die: taken
            # while that worker may still write for its actor (held or not)
            self.streams.read_all({self.access.pid_of.get(header["actor"]), header.get("pid")})
            self._from_streams(later)
            if kind == "unbind":
                self.access.unbind(header["actor"])
                self.rates.drop(header["actor"], time.monotonic())
            else:
                self.rates.bind(header, time.monotonic())
                for p in self.access.bind(header["actor"], header["pid"]):
                    self._handle(p.peer, p.cred, p.frames, later)
        elif kind == "shutdown":
            self.stop(idle=0.0)
        elif not self.access.is_server(cred) and any(p == peer for p, _h, _d in later):
            # a worker asks one thing at a time (worker.host pages its chain): a flood of queries
            # answered in one turn held every actor's commit back for seconds
            self._refuse(peer, header, "one query at a time")
        else:
            later.append((peer, header, data))

    def _pace(self, peer: bytes, cred: Cred, body: list[bytes], header: dict[str, Any] | None) -> None:
        """Charges a message from a worker's stream to its actor's rates; past them, the stream
        is left unread until they allow more (chain.rates). Not from a pid not bound yet (it
        waits for its bind), nor while the chain refuses events (they will come again)."""
        actor_id = self.access.actor_of.get(cred[2]) if cred is not None and self.unwritable is None else None
        now = time.monotonic()
        if wait := self.rates.charge(actor_id, body, header, now):
            self.streams.hold(peer, now + wait)

    def _refuse(self, peer: bytes, header: dict[str, Any], why: str) -> None:
        kind = header.get("k")
        if kind == "append":
            self._send(peer, {"k": "nack", "actor": str(header.get("actor")), "seq": -1, "error": f"refused: {why}"})
        elif isinstance(header.get("id"), str):
            self._send(peer, protocol.error(header["id"], Refused(f"the chain refuses this {kind}: {why}")))

    def _append(self, peer: bytes, header: dict[str, Any], data: list[bytes]) -> int:
        actor_id = header["actor"]
        metas = header["events"]
        sizes = header.get("sizes")
        key = (peer, actor_id)
        if header.get("sync"):
            self.acks.waited.add(key)
        if not self.writable:
            self._send(peer, {"k": "nack", "actor": actor_id, "seq": self.store.head(actor_id).durable,
                              "error": f"unavailable: {self.unwritable}"})
            self.acks.waited.discard(key)
            return 0
        if (not isinstance(sizes, list) or len(sizes) != len(metas) or len(data) != 1
                or not all(isinstance(n, int) and n >= 0 for n in sizes) or sum(sizes) != len(data[0])):
            self._send(peer, {"k": "nack", "actor": actor_id, "seq": -1,
                              "error": "malformed append: one frame holding every event's data, and its sizes"})
            return 0
        blob, at, n, refused = data[0], 0, 0, False
        for meta, size in zip(metas, sizes, strict=True):
            d, at = blob[at:at + size], at + size
            try:
                n += self.store.stage(actor_id, meta, d)
            except Rejected as r:       # a gap is routine after a restart (the worker mends it): not logged
                if r.kind != "gap":     # (a worker could send a conflict at every message)
                    self.warnings.warning(r.kind, f"chain: refused an event of {actor_id}: {r}")
                self._send(peer, {"k": "nack", "actor": actor_id, "seq": r.head, "error": f"{r.kind}: {r}"})
                refused = True
                break
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                self._send(peer, {"k": "nack", "actor": actor_id, "seq": -1, "error": f"malformed event: {e}"})
                refused = True
                break
        if n or not refused:        # what it did take is acknowledged once durable
            self.acks.stage(key, self.store.head(actor_id).seq, n)
        return n

    def _stage(self, n: int) -> None:
        if n and not self.staged:
            self.staged_since = time.monotonic()
        self.staged += n

    def _writable(self) -> bool:
        """False while the database refuses writes, but for one try every RETRY_WRITE."""
        if self.unwritable is None:
            return True
        now = time.monotonic()
        if now < self.retry_at:
            return False
        self.retry_at = now + RETRY_WRITE
        return True

    def _commit(self) -> None:
        self.staged = 0
        started = time.perf_counter()
        try:
            rows = self.store.commit()
        except Unwritable as e:
            self._refuse_group(str(e))
            return
        if rows:
            self.commit_seconds.observe(time.perf_counter() - started)
            self.committed += len(rows)
        if rows and self.unwritable is not None:
            log.warning("chain: writes resumed after %.1fs refused (%s)",
                        time.monotonic() - self.unwritable_since, self.unwritable)
            self.unwritable = None
            self.rates.resumed(time.monotonic())
            self._status()
        self.acks.stored(time.monotonic())
        if rows:
            self.publisher.publish(rows)

    def _refuse_group(self, error: str) -> None:
        """The database refused the group's commit: everyone in it hears why, and keeps its events."""
        if self.unwritable is None:
            log.error("chain: cannot write %s: %s; refusing new events until it can (one try every %gs)",
                      self.home.chains_db, error, RETRY_WRITE)
            self.unwritable_since = time.monotonic()
        self.unwritable = f"the chain cannot write {self.home.chains_db.name}: {error}"
        self.retry_at = time.monotonic() + RETRY_WRITE
        self._status()
        for peer, actor_id in self.acks.refused():
            self._send(peer, {"k": "nack", "actor": actor_id, "seq": self.store.head(actor_id).durable,
                              "error": f"unavailable: {self.unwritable}"})

    def _status(self) -> None:
        if self.server_peer is not None:
            self._send(self.server_peer, {"k": "chain_status", "error": self.unwritable})

    def _acknowledge(self, everything: bool = False) -> None:
        """Sends the acknowledgements that are due (chain.acks)."""
        for (peer, actor_id), seq in self.acks.due(time.monotonic(), everything):
            self._send(peer, {"k": "ack", "actor": actor_id, "seq": seq})

    def _send(self, peer: bytes, header: dict[str, Any], *frames: bytes) -> None:
        if isinstance(peer, StreamPeer):
            self.streams.send(peer, protocol.encode(header, *frames))
            return
        try:
            self.router.send_multipart([peer, *protocol.encode(header, *frames)], zmq.NOBLOCK)
        except zmq.ZMQError as e:        # the peer went away (EHOSTUNREACH) or is not reading
            log.debug("chain: reply to %r dropped: %s", peer, e)

    def _stats(self) -> dict[str, Any]:
        """For the server's metrics: events made durable since this process started, how long
        group commits take, and how many times a worker was slowed to its actor's rates."""
        return {"events": self.committed, "commit_seconds": self.commit_seconds.to_wire(), "slowed": self.rates.slowed}


def _bind(sock: zmq.Socket, endpoint: str) -> None:
    path = endpoint.removeprefix("ipc://")
    if path != endpoint and os.path.exists(path):
        os.unlink(path)          # left by a chain process that was killed
    sock.bind(endpoint)

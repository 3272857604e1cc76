"""The chain process's loop: take events, commit them in groups, acknowledge, publish, answer.

One ROUTER (``run/chain.sock``) takes ``append`` from workers, ``record`` from the server
and queries from both; one XPUB (``run/events.sock``) publishes each stored event under
the topic ``actor.<id>`` to whoever subscribed (observers only: PUB drops what a slow
subscriber cannot take, and subscribers catch up from the store by sequence number).

Events are staged as they arrive and committed in groups (one transaction, signed, the
WAL fsynced), and only then acknowledged: the group commit that makes durable, signed
events cheap. A group is committed ``COMMIT_DELAY`` after its first event, at once when
someone waits on it (a query, a server record, a worker's ``sync``), or when it reaches
``MAX_BATCH`` events. Nobody's progress waits on an acknowledgement (a worker needs it
only to let go of its copies, and keeps them until then), so acknowledgements are lazy
too: sent on ``sync``, when ``ACK_EVERY`` events wait for one, or ``ACK_DELAY`` after the
commit. On a busy request path that saves a commit, a signature and a wake-up per call.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sqlite3
import time
from typing import Any

import orjson
import zmq

from theater import events as ev
from theater import keys, protocol
from theater._histogram import Histogram
from theater.chaindb import ChainReader
from theater.errors import NotFound, ProtocolError, TheaterError, VerifyError
from theater.paths import Home

from .store import ChainStore, Rejected, Staged

log = logging.getLogger("theater.chain")

# Events per group commit: bounds one transaction's latency (~10 ms) under heavy load.
MAX_BATCH = 4000
# How long the first event of a group waits for others before the group is committed.
COMMIT_DELAY = 0.005
# After SIGTERM, keep serving until no event has arrived for this long (workers stopping
# at the same time are still flushing), but never longer than STOP_MAX.
STOP_IDLE = 0.3
STOP_MAX = 3.0
# One query returns at most this many events (their metadata, ~330 bytes each, must fit a
# header); the client asks again from the next seq.
QUERY_LIMIT = 2_000
# Lazy acknowledgements: at most this long after the commit, or this many events behind.
ACK_DELAY = 0.05
ACK_EVERY = 1_000
# Seconds one group commit takes (link, sign, write, fsync), counted for the `stats` query
# (the server's metrics): a millisecond or so here, more on a slow or busy disk.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ChainService:
    def __init__(self, home: Home, parent: int | None = None) -> None:
        self.home = home
        self.parent = parent
        self.key = keys.load_or_create(home)
        self.store = ChainStore(home.chains_db, self.key)
        self.reader = ChainReader(home.chains_db)
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.RCVHWM, 100_000)
        _bind(self.router, home.chain_endpoint)
        self.pub = self.ctx.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.SNDHWM, 100_000)
        _bind(self.pub, home.events_endpoint)
        self.topics: dict[bytes, int] = {}
        # (worker, actor) -> staged in this turn: (head seq, events); those asking for an ack now
        self.acks: dict[tuple[bytes, str], tuple[int, int]] = {}
        self.sync: set[tuple[bytes, str]] = set()
        # (worker, actor) -> durable, not yet acknowledged: (head seq, events, since)
        self.unacked: dict[tuple[bytes, str], tuple[int, int, float]] = {}
        self.staged = 0                     # events staged, not yet committed
        self.staged_since = 0.0
        self.stopping_since: float | None = None
        self.last_input = time.monotonic()
        self.committed = 0                  # events made durable since this process started
        self.commit_seconds = Histogram(COMMIT_BUCKETS)

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pub, zmq.POLLIN)
        log.info("chain: serving %s", self.home.chains_db)
        while True:
            if self.stopping_since is not None:
                now = time.monotonic()
                if now - self.last_input > STOP_IDLE or now - self.stopping_since > STOP_MAX:
                    break
            for sock, _ in poller.poll(self._timeout()):
                if sock is self.pub:
                    self._subscriptions()
                else:
                    self._drain()
            if self.staged:
                wait = self.staged_since + COMMIT_DELAY - time.monotonic()
                if wait > 0:        # the group fills without a wake-up per message
                    time.sleep(wait)
                    self._drain()
                self._commit()
            self._acknowledge()
        self._commit()
        self._acknowledge(everything=True)
        self.store.close()
        self.ctx.destroy(linger=500)
        log.info("chain: stopped")

    def _timeout(self) -> int:
        """Milliseconds until the next commit or acknowledgement is due."""
        due = [time.monotonic() + (0.1 if self.stopping_since is not None else 1.0)]
        if self.staged:
            due.append(self.staged_since + COMMIT_DELAY)
        if self.unacked:
            due.append(min(since for _, _, since in self.unacked.values()) + ACK_DELAY)
        return max(0, math.ceil((min(due) - time.monotonic()) * 1000))

    def _on_term(self, *_: Any) -> None:
        """SIGTERM counts only once the server is gone (its death signal); while it lives, the
        server stops us itself, after the last actor's events (a whole process group may get
        SIGTERM at once: Ctrl-C in a shell, systemd's KillMode=control-group)."""
        if self.parent is not None and os.getppid() == self.parent:
            log.info("chain: SIGTERM ignored; the server will stop the chain after its actors")
            return
        self.stop()

    def stop(self) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()

    def _subscriptions(self) -> None:
        while True:
            try:
                msg = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg:
                topic = msg[1:]
                self.topics[topic] = self.topics.get(topic, 0) + (1 if msg[0] == 1 else -1)
                if self.topics[topic] <= 0:
                    del self.topics[topic]

    def _drain(self) -> None:
        """Stages everything waiting; commits if anyone waits on it, then answers."""
        queries: list[tuple[bytes, dict[str, Any], list[bytes]]] = []
        while self.staged < MAX_BATCH:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.last_input = time.monotonic()
            peer, body = frames[0], frames[1:]
            try:
                header, data = protocol.decode(body)
            except ProtocolError as e:
                self._send(peer, {"k": "error", "re": "", **e.to_wire()})
                continue
            kind = header["k"]
            if kind == "shutdown":
                self.stop()
            elif kind == "append":
                self._stage(self._append(peer, header, data))
            elif kind == "record":
                queries.append((peer, header, data))
                self._stage(1)
            else:
                queries.append((peer, header, data))
        # records (lifecycle events from the server) are linked at the head, after the workers' events
        recorded = {}
        for _peer, header, data in queries:
            if header["k"] == "record":
                recorded[header["id"]] = self.store.append(header["actor"], header["type"], data[0], time.time_ns())
        if queries or self.sync or self.staged >= MAX_BATCH:
            self._commit()
        for peer, header, _data in queries:
            if header["k"] == "record":
                self._send(peer, protocol.ok(header["id"], seq=recorded[header["id"]]))
            else:
                self._answer(peer, header)

    def _append(self, peer: bytes, header: dict[str, Any], data: list[bytes]) -> int:
        actor_id = header["actor"]
        metas = header["events"]
        sizes = header.get("sizes")
        if not isinstance(sizes, list) or len(sizes) != len(metas) or len(data) != 1 or sum(sizes) != len(data[0]):
            self._send(peer, {"k": "nack", "actor": actor_id, "seq": -1,
                              "error": "malformed append: one frame holding every event's data, and its sizes"})
            return 0
        blob, offsets, at = data[0], [], 0
        for size in sizes:
            offsets.append((at, at + size))
            at += size
        data = [blob[a:b] for a, b in offsets]
        n = 0
        for meta, d in zip(metas, data, strict=True):
            try:
                n += self.store.stage(actor_id, meta, d)
            except Rejected as r:
                log.warning("chain: refused an event of %s: %s", actor_id, r)
                self._send(peer, {"k": "nack", "actor": actor_id, "seq": r.head, "error": f"{r.kind}: {r}"})
                break
            except (KeyError, TypeError, ValueError) as e:
                self._send(peer, {"k": "nack", "actor": actor_id, "seq": -1, "error": f"malformed event: {e}"})
                break
        key = (peer, actor_id)
        self.acks[key] = (self.store.head(actor_id).seq, self.acks.get(key, (0, 0))[1] + n)
        if header.get("sync"):
            self.sync.add(key)
        return n

    def _stage(self, n: int) -> None:
        if n and not self.staged:
            self.staged_since = time.monotonic()
        self.staged += n

    def _commit(self) -> None:
        started = time.perf_counter()
        rows = self.store.commit()
        if rows:
            self.commit_seconds.observe(time.perf_counter() - started)
            self.committed += len(rows)
        self.staged = 0
        now = time.monotonic()
        for key, (seq, n) in self.acks.items():
            _, count, since = self.unacked.get(key, (0, 0, now))
            self.unacked[key] = (seq, count + n, since)
        self.acks.clear()
        if rows and self.topics:
            self._publish(rows)

    def _acknowledge(self, everything: bool = False) -> None:
        """Sends the acknowledgements that are due (see ACK_DELAY)."""
        now = time.monotonic()
        for key, (seq, count, since) in list(self.unacked.items()):
            if everything or key in self.sync or count >= ACK_EVERY or now - since >= ACK_DELAY:
                self._send(key[0], {"k": "ack", "actor": key[1], "seq": seq})
                del self.unacked[key]
        self.sync.clear()

    def _publish(self, rows: list[Staged]) -> None:
        for row in rows:
            actor_id = row.head.actor_id
            topic = f"actor.{actor_id}".encode()
            if not any(topic.startswith(t) for t in self.topics):
                continue
            meta = {"seq": row.seq, "type": row.type, "hash": row.hash.hex(), "time_ns": row.time_ns,
                    "stamp": row.stamp.hex(), "sig": row.sig.hex() if row.sig else None}
            # a slow subscriber loses what it cannot take and sees the gap in seq numbers
            with contextlib.suppress(zmq.Again):
                self.pub.send_multipart([topic, orjson.dumps(meta), row.data], zmq.NOBLOCK)

    def _send(self, peer: bytes, header: dict[str, Any], *frames: bytes) -> None:
        try:
            self.router.send_multipart([peer, *protocol.encode(header, *frames)], zmq.NOBLOCK)
        except zmq.ZMQError as e:        # the peer went away (EHOSTUNREACH) or is not reading
            log.debug("chain: reply to %r dropped: %s", peer, e)

    # ---- queries --------------------------------------------------------------------------

    def _answer(self, peer: bytes, header: dict[str, Any]) -> None:
        rid = header.get("id", "")
        try:
            reply, frames = self._query(header)
        except TheaterError as e:
            self._send(peer, protocol.error(rid, e))
            return
        except (KeyError, TypeError, ValueError, OverflowError, sqlite3.Error) as e:   # never trust a query's fields
            self._send(peer, protocol.error(rid, ProtocolError(f"bad {header.get('what', 'query')} query: {e}")))
            return
        self._send(peer, protocol.ok(rid, **reply), *frames)

    def _query(self, header: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        kind = header["k"]
        if kind == "resume":
            h = self.store.head(header["actor"], header.get("name", ""))
            return ({"seq": h.seq, "hash": h.hash.hex() if h.hash else None, "has_state": h.has_state},
                    [h.state or b""] if h.has_state else [])
        if kind != "query":
            raise ProtocolError(f"the chain does not answer {kind!r}")
        what = header["what"]
        if what == "events":
            actor_id = self.reader.resolve(header["actor"])
            limit = min(int(header.get("limit") or QUERY_LIMIT), QUERY_LIMIT)
            types = tuple(header.get("types") or ())
            found = list(self.reader.events(actor_id, int(header.get("since") or 0), limit + 1, types))
            more = len(found) > limit
            found = found[:limit]
            return ({"actor": actor_id, "events": [ev.to_wire(e) for e in found], "more": more},
                    [e.data for e in found])
        if what == "state":
            h = self.store.head(self.reader.resolve(header["actor"]))
            return {"has_state": h.has_state}, [h.state or b""] if h.has_state else []
        if what == "head":
            return {"checkpoint": self._checkpoint(self.reader.resolve(header["actor"]))}, []
        if what == "chains":
            return {"chains": [{"actor": c.actor_id, "name": c.name, "length": c.length,
                                "head": c.head.hex() if c.head else None} for c in self.reader.chains()]}, []
        if what == "verify":
            return {"reports": self._verify(header.get("actor"))}, []
        if what == "key":
            return {"public_key": keys.public_hex(self.key.public_key())}, []
        if what == "stats":
            return {"events": self.committed, "commit_seconds": self.commit_seconds.to_wire()}, []
        raise ProtocolError(f"unknown chain query {what!r}")

    def _checkpoint(self, actor_id: str) -> dict[str, Any]:
        """A checkpoint over the whole stored chain, signed now."""
        h = self.store.head(actor_id)
        if h.hash is None or h.stamp is None:
            raise NotFound(f"actor {actor_id} has no events yet")
        sig = self.key.sign(ev.checkpoint_message(actor_id, h.seq, h.hash, h.stamp))
        return ev.Checkpoint(actor_id, h.seq, h.hash, h.stamp, sig).to_json()

    def _verify(self, actor: str | None) -> list[dict[str, Any]]:
        public = self.key.public_key()
        ids = [self.reader.resolve(actor)] if actor else [c.actor_id for c in self.reader.chains()]
        reports = []
        for actor_id in ids:
            try:
                r = ev.verify_chain(self.reader.events(actor_id), public)
                reports.append({"actor": actor_id, "ok": True, "events": r.events, "signatures": r.signatures})
            except VerifyError as e:
                reports.append({"actor": actor_id, "ok": False, "error": e.message, "seq": e.seq})
        return reports


def _bind(sock: zmq.Socket, endpoint: str) -> None:
    path = endpoint.removeprefix("ipc://")
    if path != endpoint and os.path.exists(path):
        os.unlink(path)          # left by a chain process that was killed
    sock.bind(endpoint)

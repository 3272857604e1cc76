"""The chain process's answers to ``resume`` and ``query`` (events, state, head, chains, verify, key, stats).

Reads go through a read-only connection (``theater.chaindb``), safe beside the writer;
the heads and last states come from the store's memory, which is what workers resume from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from theater import events as ev
from theater import keys, protocol
from theater.chaindb import ChainReader
from theater.errors import NotFound, ProtocolError, TheaterError, VerifyError

from .store import ChainStore

# One query returns at most this many events (their metadata, ~330 bytes each, must fit a
# header); the client asks again from the next seq.
QUERY_LIMIT = 2_000
# ... and their data at most this many bytes (but always one event): events may be large, and
# 2,000 of them in the chain process's memory at once took it to gigabytes.
QUERY_BYTES = 16 << 20
# ... and reads at most this many of the chain's rows (a type filter that matches none of a chain
# of 300,000 read them all: 0.7 s of the chain's loop, every actor's commits, and a worker may
# query its own chain every turn); the answer then says `more`, and `next` is where to go on.
QUERY_ROWS = 10_000


class Queries:
    def __init__(self, store: ChainStore, reader: ChainReader, key: Ed25519PrivateKey,
                 stats: Callable[[], dict[str, Any]]) -> None:
        self.store = store
        self.reader = reader
        self.key = key
        self.stats = stats

    def reply(self, header: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        """The message that answers ``header``: ``ok`` with the answer, or the error."""
        rid = header.get("id", "")
        try:
            fields, frames = self.answer(header)
        except TheaterError as e:
            return protocol.error(rid, e), []
        except (KeyError, TypeError, ValueError, OverflowError, sqlite3.Error) as e:   # never trust a query's fields
            return protocol.error(rid, ProtocolError(f"bad {header.get('what', 'query')} query: {e}")), []
        return protocol.ok(rid, **fields), frames

    def answer(self, header: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
        """The answer's fields and frames; raises TheaterError (or KeyError, TypeError,
        ValueError for a malformed query: never trust a query's fields)."""
        kind = header["k"]
        if kind == "resume":
            h = self.store.head(header["actor"], header.get("name", ""))
            # handoff: an effect may leave once its events are written to the chain's stream
            # (worker.chainlink); with durability = machine, only once they are fsynced
            return ({"seq": h.seq, "hash": h.hash.hex() if h.hash else None, "has_state": h.has_state,
                     "handoff": self.store.durability == "process"},
                    [h.state or b""] if h.has_state else [])
        if kind != "query":
            raise ProtocolError(f"the chain does not answer {kind!r}")
        what = header["what"]
        if what == "events":
            actor_id = self.reader.resolve(header["actor"])
            limit = min(int(header.get("limit") or QUERY_LIMIT), QUERY_LIMIT)
            types = tuple(header.get("types") or ())
            since = int(header.get("since") or 0)
            if header.get("last") and not types:      # the newest `limit` from `since` on (a live view)
                since = max(since, self.reader.length(actor_id) - limit)
            found, size, nxt = [], 0, None
            for read, e in enumerate(self.reader.events(actor_id, since), 1):    # filtered here: rows counted
                matches = ev.type_matches(e.type, types)
                if read > QUERY_ROWS or len(found) == limit or (matches and found and size + len(e.data) > QUERY_BYTES):
                    nxt = e.seq
                    break
                if matches:
                    found.append(e)
                    size += len(e.data)
            return ({"actor": actor_id, "events": [ev.to_wire(e) for e in found], "more": nxt is not None,
                     "next": nxt}, [e.data for e in found])
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
            return self.stats(), []
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
                r = self.reader.verify(actor_id, public)
                reports.append({"actor": actor_id, "ok": True, "events": r.events, "signatures": r.signatures})
            except VerifyError as e:
                reports.append({"actor": actor_id, "ok": False, "error": e.message, "seq": e.seq})
        return reports

"""Appending to the chains database with group commit.

Events are staged in memory as they arrive, then written in one transaction per batch;
the batch's last event of each actor is signed (a checkpoint over it and everything before
it). Only after the commit returns (``synchronous=FULL``: the WAL is fsynced) are the
events acknowledged, so an acknowledged event survives a crash of any process, and of
the machine. The chain process holds each actor's head in memory; an event that does not
extend it is refused.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from theater.chaindb import SCHEMA
from theater.events import checkpoint_message, decode_data, event_hash, next_stamp
from theater.protocol import MAX_INT


def _int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT


class Rejected(Exception):
    """An event that does not extend its actor's head; ``kind`` is "gap" or "conflict"."""

    def __init__(self, kind: str, message: str, head: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.head = head


@dataclass
class Head:
    actor_id: str
    aid: int
    seq: int
    hash: bytes | None
    stamp: bytes | None
    state: bytes | None = None
    has_state: bool = False
    state_dirty: bool = False


@dataclass
class Staged:
    head: Head
    seq: int
    tid: int
    data: bytes
    hash: bytes
    time_ns: int
    stamp: bytes
    type: str
    sig: bytes | None = None


class ChainStore:
    def __init__(self, path: Path, key: Ed25519PrivateKey) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.key = key
        self.heads: dict[str, Head] = {}
        self.types: dict[str, int] = dict(self.db.execute("SELECT type, tid FROM types").fetchall())
        self.staged: list[Staged] = []      # appended, not yet committed

    def close(self) -> None:
        self.db.close()

    def head(self, actor_id: str, name: str = "") -> Head:
        h = self.heads.get(actor_id)
        if h is None:
            row = self.db.execute("SELECT aid, seq, hash, stamp, has_state, state FROM actors WHERE actor = ?",
                                  (actor_id,)).fetchone()
            if row is None:
                cur = self.db.execute("INSERT INTO actors (actor, name) VALUES (?, ?)", (actor_id, name))
                h = Head(actor_id, cur.lastrowid or 0, -1, None, None)
            else:
                aid, seq, hash_, stamp, has_state, state = row
                h = Head(actor_id, aid, seq, hash_, stamp, state, bool(has_state))
            self.heads[actor_id] = h
        elif name:
            self.db.execute("UPDATE actors SET name = ? WHERE aid = ? AND name = ''", (name, h.aid))
        return h

    def known_hash(self, head: Head, seq: int) -> bytes | None:
        for row in self.staged:
            if row.head is head and row.seq == seq:
                return row.hash
        r = self.db.execute("SELECT hash FROM events WHERE aid = ? AND seq = ?", (head.aid, seq)).fetchone()
        return r[0] if r else None

    def _tid(self, type_: str) -> int:
        tid = self.types.get(type_)
        if tid is None:
            tid = self.db.execute("INSERT INTO types (type) VALUES (?)", (type_,)).lastrowid or 0
            self.types[type_] = tid
        return tid

    def stage(self, actor_id: str, meta: dict[str, Any], data: bytes) -> bool:
        """Checks one event from a worker and stages it; False if it is a duplicate we hold."""
        h = self.head(actor_id)
        seq, time_ns = meta["s"], meta["t"]
        if not (_int64(seq) and _int64(time_ns)):       # they reach SQLite and fixed-width encodings
            raise ValueError(f"seq and time_ns must be integers from 0 to {MAX_INT}")
        claimed = bytes.fromhex(meta["h"])
        if seq <= h.seq:
            if self.known_hash(h, seq) == claimed:
                return False
            raise Rejected("conflict", f"event {seq} differs from the stored event {seq}", h.seq)
        if seq != h.seq + 1:
            raise Rejected("gap", f"event {seq} does not follow the head (event {h.seq})", h.seq)
        type_ = meta["y"]
        actual = event_hash(actor_id, seq, h.hash, type_, data)
        if actual != claimed:
            raise Rejected("conflict", f"event {seq} does not extend the head (its hash differs: other parent "
                           f"or other contents)", h.seq)
        self._push(h, seq, type_, data, actual, time_ns)
        if meta.get("st"):
            h.state = decode_data(data).get("state")
            h.has_state = True
            h.state_dirty = True
        return True

    def append(self, actor_id: str, type_: str, data: bytes, time_ns: int) -> int:
        """Links an event at the head (the server's lifecycle records); returns its seq."""
        h = self.head(actor_id)
        seq = h.seq + 1
        self._push(h, seq, type_, data, event_hash(actor_id, seq, h.hash, type_, data), time_ns)
        return seq

    def _push(self, h: Head, seq: int, type_: str, data: bytes, hash_: bytes, time_ns: int) -> None:
        stamp = next_stamp(h.stamp, hash_, time_ns)
        self.staged.append(Staged(h, seq, self._tid(type_), data, hash_, time_ns, stamp, type_))
        h.seq, h.hash, h.stamp = seq, hash_, stamp

    def commit(self) -> list[Staged]:
        """Signs each actor's last staged event, writes the batch durably, returns it."""
        rows, self.staged = self.staged, []
        if not rows:
            return []
        last: dict[int, Staged] = {}
        for row in rows:
            last[row.head.aid] = row
        for row in last.values():
            row.sig = self.key.sign(checkpoint_message(row.head.actor_id, row.seq, row.hash, row.stamp))
        db = self.db
        db.execute("BEGIN")
        db.executemany("INSERT INTO events (aid, seq, tid, data, hash, time_ns, sig) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(r.head.aid, r.seq, r.tid, r.data, r.hash, r.time_ns, r.sig) for r in rows])
        for aid, row in last.items():
            h = row.head
            if h.state_dirty:
                db.execute("UPDATE actors SET seq=?, hash=?, stamp=?, has_state=1, state=? WHERE aid=?",
                           (row.seq, row.hash, row.stamp, h.state, aid))
                h.state_dirty = False
            else:
                db.execute("UPDATE actors SET seq=?, hash=?, stamp=? WHERE aid=?", (row.seq, row.hash, row.stamp, aid))
        db.execute("COMMIT")
        return rows

"""Appending to the chains database with group commit.

Events are staged in memory as they arrive, then written in one transaction per batch;
the batch's last event of each actor is signed (a checkpoint over it and everything before
it). Only after the commit returns are the events acknowledged. Every write (a new actor's
row, a new event type, the events, the heads) happens inside that one transaction, so a
commit that fails (a full disk) leaves nothing behind: the batch is rolled back, the heads
in memory return to what is stored, and the events can be sent again.

Durability (``[chain] durability`` in server.toml, see docs/chain-format.md):
* ``process`` (default): a commit is written to the WAL, not fsynced (``synchronous=NORMAL``);
  it survives the death of any process. A background thread fsyncs the WAL within
  ``FSYNC_WITHIN`` of each commit, so a machine crash loses at most that window.
  (Measured by the lead on this VM: a NORMAL WAL commit ~23 us, a FULL one ~720 us.)
* ``machine``: every commit is fsynced before it returns (``synchronous=FULL``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from theater.chaindb import SCHEMA, STATE_PREFIX, last_state, state_of
from theater.errors import Rejected
from theater.events import checkpoint_message, event_hash, next_stamp
from theater.protocol import MAX_INT


def _int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT

log = logging.getLogger("theater.chain")

# durability = "process": the WAL is fsynced this long after a commit at the latest.
FSYNC_WITHIN = 0.005


# Event types only the server records (``record``), refused from a worker: how an incarnation
# ended is the server's word in the chain, which its actor's code (escaped into its worker,
# which writes the rest of its events) cannot put there (nor fool `theater run` with).
SERVER_RECORDED = frozenset({"lifecycle/exit"})

class Unwritable(Exception):
    """The database refused a commit (disk full, I/O error); the batch was rolled back."""


@dataclass
class Head:
    actor_id: str
    aid: int | None          # its row in ``actors``; None until its first commit
    seq: int                 # the last event staged (or stored)
    hash: bytes | None
    stamp: bytes | None
    name: str = ""
    state: bytes | None = None
    has_state: bool = False
    state_seq: int | None = None   # the event that set the state (its data holds it)
    state_dirty: bool = False
    name_dirty: bool = False
    durable: int = -1        # the last event stored

    def snapshot(self) -> tuple[Any, ...]:
        return self.aid, self.seq, self.hash, self.stamp, self.state, self.has_state, self.state_seq, self.state_dirty

    def restore(self, snap: tuple[Any, ...]) -> None:
        self.aid, self.seq, self.hash, self.stamp, self.state, self.has_state, self.state_seq, self.state_dirty = snap


@dataclass
class Staged:
    head: Head
    seq: int
    type: str
    data: bytes
    hash: bytes
    time_ns: int
    stamp: bytes
    sig: bytes | None = None


class ChainStore:
    def __init__(self, path: Path, key: Ed25519PrivateKey, durability: str = "process") -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=" + ("FULL" if durability == "machine" else "NORMAL"))
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone() and \
                not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'state_events'").fetchone():
            log.warning("chain: indexing the events that set a state in %s (once; a large database takes a while)",
                        path)
        self.db.executescript(SCHEMA)
        if "state_seq" not in {row[1] for row in self.db.execute("PRAGMA table_info(actors)")}:
            self.db.execute("ALTER TABLE actors ADD COLUMN state_seq INTEGER")     # a database from before it
        self.key = key
        self.durability = durability
        self.heads: dict[str, Head] = {}
        self.types: dict[str, int] = dict(self.db.execute("SELECT type, tid FROM types").fetchall())
        self.staged: list[Staged] = []      # appended, not yet committed
        self._staged_hashes: dict[tuple[str, int], bytes] = {}
        self._before: dict[str, tuple[Head, tuple[Any, ...]]] = {}    # heads as stored, for a rollback
        self.flusher = WalFlusher(Path(f"{path}-wal")) if durability == "process" else None

    def close(self) -> None:
        if self.flusher is not None:
            self.flusher.flush()
        self.db.close()

    def head(self, actor_id: str, name: str = "") -> Head:
        h = self.heads.get(actor_id)
        if h is None:
            row = self.db.execute("SELECT aid, seq, hash, stamp, has_state, state, name, state_seq FROM actors "
                                  "WHERE actor = ?", (actor_id,)).fetchone()
            if row is None:
                h = Head(actor_id, None, -1, None, None, name)
            else:
                aid, seq, hash_, stamp, has_state, state, stored_name, state_seq = row
                if has_state:
                    state, state_seq = self._state(actor_id, aid, seq, state, state_seq)
                h = Head(actor_id, aid, seq, hash_, stamp, stored_name, state, bool(has_state), state_seq,
                         durable=seq)
            self.heads[actor_id] = h
        if name and not h.name:
            h.name, h.name_dirty = name, True       # written with its next commit
        return h

    def forget_idle(self, bound: Container[str]) -> None:
        """Drops the heads of actors with no worker (not in ``bound``) and nothing staged or
        unwritten: ``head`` reads them again from the database if they are needed. Each head
        holds its actor's last state, and one was kept for every actor the process had seen."""
        for actor_id in [a for a, h in self.heads.items() if a not in bound and h.seq == h.durable
                         and not (h.state_dirty or h.name_dirty)]:
            del self.heads[actor_id]

    def known_hash(self, head: Head, seq: int) -> bytes | None:
        if seq > head.durable:          # staged in this group (a resend brings thousands: no scan)
            return self._staged_hashes.get((head.actor_id, seq))
        if head.aid is None:
            return None
        r = self.db.execute("SELECT hash FROM events WHERE aid = ? AND seq = ?", (head.aid, seq)).fetchone()
        return r[0] if r else None

    def _state(self, actor_id: str, aid: int, head: int, copy: bytes | None,
               state_seq: int | None) -> tuple[bytes | None, int | None]:
        """An actor's last state and the event that set it: the last wasm result that carries one,
        hash-linked and signed (an edit of it fails ``verify``). The row's copy and ``state_seq``
        are not: an edited copy was the state the actor resumed from, laundered into its next
        lifecycle/start; they are only compared with what the chain holds."""
        found = last_state(self.db, aid, self.types.get("wasm"), head)
        if found is not None:
            if found != (copy, state_seq):
                log.error("chain: actor %s: its stored state differs from the one its chain holds (event "
                          "%d); the chain's is used (chains.db was changed outside theater?)", actor_id, found[1])
            return found
        log.error("chain: actor %s: no event of its chain holds the state stored for it; it resumes with none "
                  "(chains.db was changed outside theater?)", actor_id)
        return None, None

    def stage(self, actor_id: str, meta: dict[str, Any], data: bytes) -> bool:
        """Checks one event from a worker and stages it; False if it is a duplicate we hold."""
        h = self.head(actor_id)
        seq, time_ns = meta["seq"], meta["time_ns"]
        if not (_int64(seq) and _int64(time_ns)):       # they reach SQLite and fixed-width encodings
            raise ValueError(f"seq and time_ns must be integers from 0 to {MAX_INT}")
        claimed = bytes.fromhex(meta["hash"])
        if seq <= h.seq:
            if self.known_hash(h, seq) == claimed:
                return False
            raise Rejected("conflict", f"event {seq} differs from the stored event {seq}", h.durable)
        if seq != h.seq + 1:
            raise Rejected("gap", f"event {seq} does not follow the head (event {h.seq})", h.durable)
        type_ = meta["type"]
        if not isinstance(type_, str):
            raise ValueError("an event's type must be a string")
        if type_ in SERVER_RECORDED:
            raise ValueError(f"a {type_} event is the server's to record, not a worker's")
        actual = event_hash(actor_id, seq, h.hash, type_, data)
        if actual != claimed:
            raise Rejected("conflict", f"event {seq} does not extend the head (its hash differs: other parent "
                           f"or other contents)", h.durable)
        sets = bool(meta.get("state"))
        if sets and not (type_ == "wasm" and data.startswith(STATE_PREFIX)):
            raise ValueError("an event that sets the state must be a wasm result holding it (see docs/chain-format.md)")
        state = state_of(data) if sets else None        # read before it is staged: refused, it is not stored
        self._push(h, seq, type_, data, actual, time_ns)
        if sets:
            h.state = state
            h.state_seq = seq
            h.has_state = True
            h.state_dirty = True
        return True

    def append(self, actor_id: str, type_: str, data: bytes, time_ns: int) -> int:
        """Links an event at the head (the server's lifecycle records); returns its seq. The same
        record already at the head is that record sent again (the server sends again what a dead
        chain process did not answer, which it may have committed): linked once, its seq returned.
        Nothing else comes between (the server waits for its answer before it acts on it), and two
        real records are never alike (each names its incarnation)."""
        h = self.head(actor_id)
        if self._at_head(h) == (type_, data):
            return h.seq
        seq = h.seq + 1
        self._push(h, seq, type_, data, event_hash(actor_id, seq, h.hash, type_, data), time_ns)
        return seq

    def _at_head(self, h: Head) -> tuple[str, bytes] | None:
        """(type, data) of the actor's last event, staged or stored."""
        if h.seq > h.durable:
            row = next((r for r in reversed(self.staged) if r.head is h and r.seq == h.seq), None)
            return (row.type, row.data) if row is not None else None
        if h.aid is None:
            return None
        r = self.db.execute("SELECT t.type, e.data FROM events e JOIN types t ON t.tid = e.tid "
                            "WHERE e.aid = ? AND e.seq = ?", (h.aid, h.seq)).fetchone()
        return (r[0], r[1]) if r else None

    def _push(self, h: Head, seq: int, type_: str, data: bytes, hash_: bytes, time_ns: int) -> None:
        if h.actor_id not in self._before:
            self._before[h.actor_id] = (h, h.snapshot())
        stamp = next_stamp(h.stamp, hash_, time_ns)
        self.staged.append(Staged(h, seq, type_, data, hash_, time_ns, stamp))
        self._staged_hashes[(h.actor_id, seq)] = hash_
        h.seq, h.hash, h.stamp = seq, hash_, stamp

    def commit(self) -> list[Staged]:
        """Signs each actor's last staged event, writes the batch in one transaction, returns it.
        Raises Unwritable (the batch rolled back, the heads as stored) if the database refuses."""
        rows, self.staged = self.staged, []
        before, self._before = self._before, {}
        self._staged_hashes.clear()
        if not rows:
            return []
        last: dict[str, Staged] = {}
        for row in rows:
            last[row.head.actor_id] = row
        for row in last.values():
            row.sig = self.key.sign(checkpoint_message(row.head.actor_id, row.seq, row.hash, row.stamp))
        new_types: list[str] = []
        db = self.db
        try:
            db.execute("BEGIN")
            for row in last.values():
                h = row.head
                if h.aid is None:
                    h.aid = db.execute("INSERT INTO actors (actor, name) VALUES (?, ?)", (h.actor_id, h.name)).lastrowid
                elif h.name_dirty:
                    db.execute("UPDATE actors SET name = ? WHERE aid = ? AND name = ''", (h.name, h.aid))
            for row in rows:
                if row.type not in self.types:
                    self.types[row.type] = db.execute("INSERT INTO types (type) VALUES (?)", (row.type,)).lastrowid or 0
                    new_types.append(row.type)
            db.executemany("INSERT INTO events (aid, seq, tid, data, hash, time_ns, sig) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(r.head.aid, r.seq, self.types[r.type], r.data, r.hash, r.time_ns, r.sig) for r in rows])
            for row in last.values():
                h = row.head
                if h.state_dirty:
                    db.execute("UPDATE actors SET seq=?, hash=?, stamp=?, has_state=1, state=?, state_seq=? "
                               "WHERE aid=?", (row.seq, row.hash, row.stamp, h.state, h.state_seq, h.aid))
                else:
                    db.execute("UPDATE actors SET seq=?, hash=?, stamp=? WHERE aid=?",
                               (row.seq, row.hash, row.stamp, h.aid))
            db.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            for t in new_types:
                del self.types[t]
            for h, snap in before.values():
                h.restore(snap)
            raise Unwritable(str(e)) from None
        for row in last.values():
            row.head.durable = row.seq
            row.head.state_dirty = row.head.name_dirty = False
        if self.flusher is not None:
            self.flusher.poke()
        return rows


class WalFlusher:
    """durability = "process": fsyncs the WAL in the background, within FSYNC_WITHIN of a commit
    (one fsync covers every commit since the last; it never delays an acknowledgement)."""

    def __init__(self, wal: Path) -> None:
        self.wal = wal
        self.due = threading.Event()
        self.failed = False
        threading.Thread(target=self._run, name="wal-fsync", daemon=True).start()

    def poke(self) -> None:
        self.due.set()

    def _run(self) -> None:
        while True:
            self.due.wait()
            time.sleep(FSYNC_WITHIN)
            self.due.clear()
            self.flush()

    def flush(self) -> None:
        try:
            fd = os.open(self.wal, os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as e:
            self._failed(e)
            return
        try:
            os.fsync(fd)
            self.failed = False
        except OSError as e:
            self._failed(e)
        finally:
            os.close(fd)

    def _failed(self, e: OSError) -> None:
        if not self.failed:
            log.error("chain: cannot fsync %s: %s", self.wal, e)
            self.failed = True

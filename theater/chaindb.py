"""The chains database (``$THEATER_HOME/chains.db``, SQLite in WAL mode): schema and reading.

Only the chain process writes it. Anyone may read it: ``theater verify`` and
``theater export`` work on it offline, with nothing but the host's public key.

What is stored per event is what cannot be recomputed: sequence number, type, data,
time and, on the events that end a committed batch, the signature. Each event's hash is
stored too, for fast lookups, but verification recomputes it (with the previous event's
hash as parent) and the time stamps, so editing any of them is caught.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotFound, UsageError, VerifyError
from .events import Checkpoint, Event, Report, decode_data, next_stamp, type_matches, verify_chain
from .ids import MIN_PREFIX, ambiguous_name
from .protocol import MAX_INT

if TYPE_CHECKING:          # a CLI command that verifies nothing does not import cryptography
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# Chains whose last read's end a reader keeps (``ChainReader._resume``), the least recently read
# forgotten first: the chain process's reader serves every chain a long-running server ever had.
RESUME_KEPT = 1024

# How the canonical CBOR of a wasm result that sets the state begins: a map of 4 keys, "event":
# "result", then "state" (keys sort by length, then bytes). The index below holds just those.
STATE_PREFIX = bytes.fromhex("a4656576656e7466726573756c74657374617465")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS actors (
    aid INTEGER PRIMARY KEY,
    actor TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    seq INTEGER NOT NULL DEFAULT -1,      -- last stored event
    hash BLOB,                            -- its hash
    stamp BLOB,                           -- its time stamp
    has_state INTEGER NOT NULL DEFAULT 0, -- the last committed state (from the last wasm result)
    state BLOB,                           -- a copy: the event state_seq holds it, hash-linked
    state_seq INTEGER
);
CREATE TABLE IF NOT EXISTS types (tid INTEGER PRIMARY KEY, type TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    aid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    data BLOB NOT NULL,
    hash BLOB NOT NULL,
    time_ns INTEGER NOT NULL,
    sig BLOB,
    PRIMARY KEY (aid, seq)
) WITHOUT ROWID;
-- the wasm results that set a state: where an actor's last state is found without reading its
-- whole chain (chain.store)
CREATE INDEX IF NOT EXISTS state_events ON events(aid, tid, seq) WHERE substr(data, 1, 20) = x'{STATE_PREFIX.hex()}';
"""


# An actor's last state is in its last wasm result that holds one: found newest first through an
# index of just those (SCHEMA: their canonical CBOR begins with the keys event, result, state),
# so an actor's head loads at the same speed whatever the length of its chain.
# Should none be found there (an encoding the index does not know), every event that holds
# the key "state" (x'65' "state") is looked at, as before the index. Each is decoded to be sure.
# (Only rows of the chain: an integer seq up to the head. SQLite sorts a blob or text above any
# number, and a row with one, added by an edit, would otherwise be taken first.)
_STATE_QUERY = ("SELECT seq, data FROM events INDEXED BY state_events WHERE aid = ? AND tid = ? "
                f"AND substr(data, 1, 20) = x'{STATE_PREFIX.hex()}' AND typeof(seq) = 'integer' "
                "AND seq BETWEEN 0 AND ? ORDER BY seq DESC")
_STATE_SCAN = ("SELECT seq, data FROM events WHERE aid = ? AND tid = ? AND instr(data, x'657374617465') > 0 "
               "AND typeof(seq) = 'integer' AND seq BETWEEN 0 AND ? ORDER BY seq DESC")


def last_state(db: sqlite3.Connection, aid: int, wasm_tid: int | None, head: int) -> tuple[bytes | None, int] | None:
    """The state in the actor's last wasm result that holds one, and that event's seq (None: none
    does), read from its chain: hash-linked and signed, where the ``actors`` row's copy is not."""
    for query in (_STATE_QUERY, _STATE_SCAN):
        try:
            rows = db.execute(query, (aid, wasm_tid, head))
        except sqlite3.OperationalError:        # no index yet: a database no chain process of today opened
            continue
        for seq, data in rows:
            try:
                return state_of(data), seq
            except ValueError:          # no state after all (a worker's unmarked result, an edit): passed over
                continue
    return None


def state_of(data: bytes) -> bytes | None:
    """The state a wasm result's data sets (None: it sets none); ValueError if it is no such result
    (not CBOR; not a map with ``event: "result"`` and a ``state`` of bytes or null). A worker wrote
    it: whatever it holds, reading it must neither fail otherwise nor give the actor a state of
    another type (a frame, a blob in SQLite)."""
    try:
        value = decode_data(data)
    except Exception as e:      # cbor2's errors are no ValueError since cbor2 6, and its tags raise others
        raise ValueError(f"its data is not CBOR ({e})") from None
    state = value.get("state", False) if isinstance(value, dict) and value.get("event") == "result" else False
    if state is not None and not isinstance(state, bytes):
        raise ValueError("its data is not a wasm result holding a state (bytes, or null)")
    return state


@dataclass
class ChainInfo:
    actor_id: str
    name: str
    length: int
    head: bytes | None


class ChainReader:
    """Read-only access; safe while the chain process writes (WAL)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise NotFound(f"no chains database at {path}")
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        # Where each chain's last read stopped: (the last event read, its parent, the stamp
        # before it). Stamps are not stored, so a read from the middle would recompute them from
        # event 0; paging and following read on from here. The last event read, not the next
        # one: a page reads one event past what it returns (to learn whether there is more),
        # and the next page starts at that event.
        self._resume: dict[int, tuple[int, bytes | None, bytes | None]] = {}

    def close(self) -> None:
        self.db.close()

    def chains(self) -> list[ChainInfo]:
        rows = self.db.execute("SELECT actor, name, seq, hash FROM actors ORDER BY aid").fetchall()
        return [ChainInfo(a, n, s + 1, h) for a, n, s, h in rows]

    def length(self, actor_id: str) -> int:
        """How many events the actor's stored chain holds."""
        row = self.db.execute("SELECT seq FROM actors WHERE actor = ?", (actor_id,)).fetchone()
        return row[0] + 1 if row else 0

    def verify(self, actor_id: str, public_key: Ed25519PublicKey, trusted: Checkpoint | None = None) -> Report:
        """``verify_chain`` over the stored chain, which must also reach the head the store
        records for it. That record is written with its events, in one transaction: an
        unsigned checkpoint, which catches events deleted from the end (or all of them) where
        hashes and signatures alone cannot (docs/chain-format.md).

        Every read is of one snapshot (one read transaction): a chain the chain process
        writes meanwhile is verified as it stood, not taken for one with rows added beside it."""
        self.db.execute("BEGIN")
        events = None
        try:
            aid = self._aid(actor_id)
            length, head = self.db.execute("SELECT seq + 1, hash FROM actors WHERE aid = ?", (aid,)).fetchone()
            events = self.events(actor_id)
            report = verify_chain(events, public_key, trusted)
            if report.events < length:
                raise VerifyError(f"event {report.events}: missing; the store records {length} events for this "
                                  f"chain (its events were cut short)", report.events)
            if length:
                row = self.db.execute("SELECT hash FROM events WHERE aid = ? AND seq = ?",
                                      (aid, length - 1)).fetchone()
                if row is None or row[0] != head:
                    raise VerifyError(f"event {length - 1}: differs from the head the store records for this "
                                      f"chain", length - 1)
            (stored,) = self.db.execute("SELECT count(*) FROM events WHERE aid = ?", (aid,)).fetchone()
            if stored != report.events:         # rows no read reaches: a seq below 0, or not a number
                raise VerifyError(f"the store holds {stored} events for this chain, of which {report.events} are "
                                  f"its chain: rows were added beside it", report.events)
            return report
        finally:
            if events is not None:
                events.close()          # a read verify_chain stopped at an error ends before the snapshot
            self.db.rollback()

    def state(self, actor_id: str) -> bytes | None:
        """The last state the actor's chain committed (None: it set none)."""
        aid = self._aid(actor_id)
        (head,) = self.db.execute("SELECT seq FROM actors WHERE aid = ?", (aid,)).fetchone()
        tid = self.db.execute("SELECT tid FROM types WHERE type = 'wasm'").fetchone()
        found = last_state(self.db, aid, tid[0] if tid else None, head)
        return found[0] if found is not None else None

    def resolve(self, key: str) -> str:
        """The full id of the one stored chain ``key`` names: an actor id, the name of exactly
        one stored actor (a stopped actor is known by its name too), or a unique id prefix of
        ``MIN_PREFIX`` characters at least; exact matches first, as the server's registry."""
        if self.db.execute("SELECT 1 FROM actors WHERE actor = ?", (key,)).fetchone():
            return key
        named = [r[0] for r in self.db.execute("SELECT actor FROM actors WHERE name = ? ORDER BY aid", (key,))]
        if len(named) == 1:
            return named[0]
        if named:
            raise UsageError(ambiguous_name(key, named, "theater chains"))
        if len(key) >= MIN_PREFIX:
            rows = self.db.execute("SELECT actor FROM actors WHERE actor >= ? AND actor < ? LIMIT 2",
                                   (key, key + "\uffff")).fetchall()
            if len(rows) == 1:
                return rows[0][0]
            if rows:
                raise UsageError(f"actor id prefix {key!r} is ambiguous: give more of the id (see `theater chains`)")
        raise NotFound(f"no actor or chain {key!r} in this home (see `theater chains`)")

    def events(self, actor_id: str, since: int = 0, limit: int | None = None,
               types: tuple[str, ...] = ()) -> Iterator[Event]:
        """Events from ``since``, oldest first, with parents and stamps filled in."""
        aid = self._aid(actor_id)
        parent, stamp = self._before(aid, since)
        sql = ("SELECT e.seq, t.type, e.data, e.hash, e.time_ns, e.sig FROM events e "
               "JOIN types t ON t.tid = e.tid WHERE e.aid = ? AND e.seq >= ? ORDER BY e.seq")
        n, last = 0, None
        try:
            for row in self.db.execute(sql, (aid, since)):
                seq, type_, data, hash_, time_ns, sig = _checked(row)
                last = (seq, parent, stamp)
                stamp, prev = next_stamp(stamp, hash_, time_ns), parent
                parent = hash_
                if not type_matches(type_, types):
                    continue
                yield Event(actor_id, seq, prev, type_, data, hash_, time_ns, stamp, sig)
                n += 1
                if limit is not None and n >= limit:
                    return
        finally:
            if last is not None:
                self._resume.pop(aid, None)             # to the end: the most recently read
                self._resume[aid] = last
                if len(self._resume) > RESUME_KEPT:
                    del self._resume[next(iter(self._resume))]

    def _aid(self, actor_id: str) -> int:
        row = self.db.execute("SELECT aid FROM actors WHERE actor = ?", (actor_id,)).fetchone()
        if row is None:
            raise NotFound(f"no chain for actor {actor_id}")
        return row[0]

    def _before(self, aid: int, since: int) -> tuple[bytes | None, bytes | None]:
        """The parent hash and stamp that precede event ``since``: recomputed from where the
        last read of this chain stopped, if that is not past ``since``, else from event 0."""
        if since <= 0:
            return None, None
        start, parent, stamp = self._resume.get(aid, (0, None, None))
        if start > since:
            start, parent, stamp = 0, None, None
        for hash_, time_ns in self.db.execute(
                "SELECT hash, time_ns FROM events WHERE aid = ? AND seq >= ? AND seq < ? ORDER BY seq",
                (aid, start, since)):
            stamp = next_stamp(stamp, hash_, time_ns)
            parent = hash_
        return parent, stamp


def _checked(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A stored event's columns, each of the type the format says (an edited row may hold
    anything SQLite takes): a wrong one is a bad event, not a crash of whoever reads it."""
    seq, type_, data, hash_, time_ns, sig = row
    if not (type(seq) is int and 0 <= seq <= MAX_INT):
        raise VerifyError(f"a stored event's seq is {seq!r}, not an integer from 0 to {MAX_INT}")
    if not (type(type_) is str and type(data) is bytes and type(hash_) is bytes and len(hash_) == 32
            and type(time_ns) is int and 0 <= time_ns <= MAX_INT and (sig is None or type(sig) is bytes)):
        raise VerifyError(f"event {seq}: a stored column is not of its type (type text, data and hash blobs, "
                          f"time_ns an integer from 0, sig a blob or null)", seq)
    return row

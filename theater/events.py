"""The event chain's format: what is hashed, what is signed, how a chain is verified.

``docs/chain-format.md`` specifies the same bytes for independent verifiers, and
``tests/vectors/chain-v1.jsonl`` holds a chain they can check. In short:

* ``hash  = SHA-256("theater-event/v1\\0" || lp(actor_id) || u64(seq) || parent || lp(type) || lp(data))``
  where ``lp(x) = u64(len(x)) || x``, ``u64`` is big-endian, and ``parent`` is ``0x00`` for
  the first event or ``0x01 || parent_hash``. Wall-clock time is not hashed, so a replay
  reproduces every hash.
* ``stamp = SHA-256("theater-stamp/v1\\0" || previous stamp (32 zero bytes first) || hash || u64(time_ns))``
  binds each event's time to the chain.
* A checkpoint signs ``"theater-checkpoint/v1\\0" || lp(actor_id) || u64(seq) || hash || stamp``
  of one event with the host's Ed25519 key, and so covers that event and all before it.
  The chain process signs the last event of every batch it commits, so no event stays
  unsigned for longer than one group commit.
* ``data`` is the canonical CBOR (RFC 8949 section 4.2) of the event's inputs and outputs.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import hashlib
import hmac
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cbor2
import orjson

if TYPE_CHECKING:       # loaded by whoever verifies (it holds a key): the CLI starts without it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .bodies import Undecodable, body_of
from .errors import UsageError, VerifyError
from .protocol import MAX_INT, MAX_PAYLOAD

EVENT_DOMAIN = b"theater-event/v1\x00"
STAMP_DOMAIN = b"theater-stamp/v1\x00"
CHECKPOINT_DOMAIN = b"theater-checkpoint/v1\x00"
NO_STAMP = bytes(32)


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(8, "big") + b


@functools.lru_cache(maxsize=4096)
def _actor_prefix(actor_id: str) -> Any:
    """The hash state after the domain and the actor id: the same for every event of one chain."""
    return hashlib.sha256(EVENT_DOMAIN + _lp(actor_id.encode()))


@functools.lru_cache(maxsize=1024)
def _type_field(event_type: str) -> bytes:
    return _lp(event_type.encode())


def event_hash(actor_id: str, seq: int, parent: bytes | None, event_type: str, data: bytes) -> bytes:
    h = _actor_prefix(actor_id).copy()
    link = b"\x00" if parent is None else b"\x01" + parent
    h.update(b"".join((_u64(seq), link, _type_field(event_type), _lp(data))))
    return h.digest()


def next_stamp(previous: bytes | None, hash_: bytes, time_ns: int) -> bytes:
    return hashlib.sha256(STAMP_DOMAIN + (previous or NO_STAMP) + hash_ + _u64(time_ns)).digest()


def checkpoint_message(actor_id: str, seq: int, hash_: bytes, stamp: bytes) -> bytes:
    return CHECKPOINT_DOMAIN + _lp(actor_id.encode()) + _u64(seq) + hash_ + stamp


# Canonical CBOR (RFC 8949 4.2, cbor2's ``canonical=True``) differs from cbor2's plain encoding
# only in the order of map keys, the size of floats and the order of sets. Most event data has
# none of those but the event's own map, which worker.records builds in canonical order: such a
# value is encoded plainly, byte for byte the same and 3-4x faster (a call event: 1.8 against
# 4.8 us idle, 2.8 against 10.6 under load), which every event of every call pays.
_SCALARS = frozenset({bytes, str, int, bool, type(None)})
_CHECKED_MOST = 32          # longer lists and maps go to the canonical encoder: checking costs more
_KEY_ORDERS: dict[tuple[Any, ...], bool] = {}       # a map's keys -> whether in canonical order


def encode_data(value: Any) -> bytes:
    if _plainly_canonical(value):
        return cbor2.dumps(value)
    return cbor2.dumps(value, canonical=True)


def _plainly_canonical(value: Any) -> bool:
    """Whether ``value``'s plain encoding is its canonical one: scalars, lists, and maps whose
    text keys are in canonical order (shorter encodings first, then bytewise), all the way down."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is list:
        return len(value) <= _CHECKED_MOST and _all_plain(value)
    if kind is not dict or len(value) > _CHECKED_MOST:
        return False
    keys = tuple(value)
    ordered = _KEY_ORDERS.get(keys)
    if ordered is None:
        encoded = [cbor2.dumps(k) if type(k) is str else None for k in keys]
        ordered = None not in encoded and all((len(a), a) < (len(b), b) for a, b in itertools.pairwise(encoded))
        if len(_KEY_ORDERS) >= 1024:
            _KEY_ORDERS.clear()
        _KEY_ORDERS[keys] = ordered
    return ordered and _all_plain(value.values())


def _all_plain(values: Iterable[Any]) -> bool:
    for v in values:  # noqa: SIM110 (a loop, not all() over a generator: twice as fast, on every event)
        if type(v) not in _SCALARS and not _plainly_canonical(v):
            return False
    return True


def decode_data(data: bytes) -> Any:
    """The CBOR value of an event's data; raises what cbor2 raises. To show data: ``bodies.body_of``."""
    return cbor2.loads(data)


def readable(value: Any) -> Any:
    """Decoded event data as JSON: bytes become {"utf8": text} or {"b64": base64}."""
    if isinstance(value, bytes):
        try:
            return {"utf8": value.decode("utf-8")}
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): readable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [readable(v) for v in value]
    return value


@dataclass(slots=True)
class Event:
    actor_id: str
    seq: int
    parent: bytes | None
    type: str
    data: bytes
    hash: bytes
    time_ns: int = 0
    stamp: bytes = b""
    signature: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        """One line of `theater export` and one element of `theater events --json`."""
        body = body_of(self.data)           # data we cannot decode is still verifiable: its body is null
        return {
            "actor": self.actor_id, "seq": self.seq, "type": self.type,
            "hash": self.hash.hex(), "parent": self.parent.hex() if self.parent else None,
            "time_ns": self.time_ns, "stamp": self.stamp.hex(),
            "signature": self.signature.hex() if self.signature else None,
            "data": base64.b64encode(self.data).decode(),
            "body": None if isinstance(body, Undecodable) else readable(body),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Event:
        try:
            return cls(
                actor_id=str(d["actor"]), seq=_count(d["seq"], "seq"), type=str(d["type"]),
                parent=bytes.fromhex(d["parent"]) if d.get("parent") else None,
                data=base64.b64decode(d["data"], validate=True), hash=bytes.fromhex(d["hash"]),
                time_ns=_count(d.get("time_ns", 0), "time_ns"), stamp=bytes.fromhex(d.get("stamp") or ""),
                signature=bytes.fromhex(d["signature"]) if d.get("signature") else None,
            )
        except (KeyError, ValueError, TypeError) as e:
            raise VerifyError(f"malformed event record: {_why(e, d)}") from None


def _why(e: Exception, d: Any) -> str:
    """What is wrong with a record, in its own terms (not Python's: "'actor'", "list indices")."""
    if not isinstance(d, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(d), "a number")
        return f"{kind}, not a JSON object"
    if isinstance(e, KeyError):
        return f"no {e.args[0]!r} field"
    if isinstance(e, TypeError):
        return "a field of the wrong type (hex and base64 fields are strings)"
    return str(e)


def _count(value: Any, key: str) -> int:
    """A sequence number or time from a file: an integer the hash's u64 and the store can hold
    (a -1, 2^64 or 1e300 raised OverflowError deep in the verifier: issue 16, finding 11)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise VerifyError(f"{key} is a {type(value).__name__}, not an integer")
    if not 0 <= value <= MAX_INT:
        raise VerifyError(f"{key} is out of range (0 to {MAX_INT})")
    return value


def to_wire(ev: Event) -> dict[str, Any]:
    """An event's fields for a protocol header; its data travels as a separate frame."""
    return {"seq": ev.seq, "type": ev.type, "parent": ev.parent.hex() if ev.parent else None,
            "hash": ev.hash.hex(), "time_ns": ev.time_ns, "stamp": ev.stamp.hex(),
            "sig": ev.signature.hex() if ev.signature else None}


def from_wire(actor_id: str, meta: dict[str, Any], data: bytes) -> Event:
    return Event(actor_id, meta["seq"], bytes.fromhex(meta["parent"]) if meta["parent"] else None, meta["type"],
                 data, bytes.fromhex(meta["hash"]), meta["time_ns"], bytes.fromhex(meta["stamp"]),
                 bytes.fromhex(meta["sig"]) if meta["sig"] else None)


def type_matches(event_type: str, patterns: Sequence[str] | None) -> bool:
    """``--type`` filters, shell-style globs (``*``, ``?``, ``[...]``) matched against the full
    type or any tail of it that starts after a ``/`` or ``:``: ``log`` is
    ``theater:simple/runtime/log``, ``http-client/*`` every http-client call,
    ``theater:simple/runtime/*`` what it says, ``wasm`` the export calls. None given matches all."""
    return not patterns or _type_matches(event_type, tuple(patterns))


@functools.lru_cache(maxsize=4096)      # a chain has few distinct types: each is matched once
def _type_matches(event_type: str, patterns: tuple[str, ...]) -> bool:
    tails = [event_type, *(event_type[i + 1:] for i, c in enumerate(event_type) if c in "/:")]
    return any(fnmatch.fnmatchcase(t, p) for p in patterns for t in tails)


# The longest line an export holds: one event's data (a message at most) in base64, and its fields.
MAX_EXPORT_LINE = MAX_PAYLOAD * 4 // 3 + (64 << 10)


def read_export(path: str | Path) -> list[Event]:
    """The events of a `theater export` file (JSON Lines), all of them (see ``export_events``)."""
    return list(export_events(path))


def export_events(path: str | Path) -> Iterator[Event]:
    """The events of a `theater export` file (JSON Lines), one line at a time (``verify --file``
    holds no more than the event it checks: a large file of bogus records took 279 MB to refuse
    at its first); a bad line is named by number. A file with no events is refused too: it
    proves nothing, and a chain cut down to nothing must not verify as "ok"."""
    seen = False
    try:
        with open(path, "rb") as f:
            for i, line in enumerate(iter(lambda: f.readline(MAX_EXPORT_LINE + 1), b""), 1):
                if len(line) > MAX_EXPORT_LINE:     # an endless line (/dev/zero) is not read whole
                    raise MalformedExport(f"{path}:{i}: over {MAX_EXPORT_LINE} bytes: not an event record")
                if not line.strip():
                    continue
                try:
                    event = Event.from_json(orjson.loads(line))
                except (orjson.JSONDecodeError, VerifyError) as e:
                    raise MalformedExport(f"{path}:{i}: not an event record: {e}") from None
                seen = True
                yield event
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if not seen:
        raise MalformedExport(f"{path}: no events (an empty export verifies nothing)", 0)


class MalformedExport(VerifyError):
    """A file that holds no chain to verify (a line that is no event record, no events at all):
    the whole command fails, not one chain of it."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: this actor's chain had ``seq + 1`` events ending in ``hash``."""

    actor_id: str
    seq: int
    hash: bytes
    stamp: bytes
    signature: bytes

    @property
    def length(self) -> int:
        return self.seq + 1

    def message(self) -> bytes:
        return checkpoint_message(self.actor_id, self.seq, self.hash, self.stamp)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            public_key.verify(self.signature, self.message())
            return True
        except InvalidSignature:
            return False

    def to_json(self) -> dict[str, Any]:
        return {"actor": self.actor_id, "length": self.length, "seq": self.seq, "head": self.hash.hex(),
                "stamp": self.stamp.hex(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Checkpoint:
        try:
            return cls(str(d["actor"]), _count(d["seq"], "seq"), bytes.fromhex(d["head"]),
                       bytes.fromhex(d["stamp"]), bytes.fromhex(d["signature"]))
        except (KeyError, ValueError, TypeError) as e:
            raise VerifyError(f"malformed checkpoint: {_why(e, d)}") from None


@dataclass
class Report:
    actor_id: str
    events: int
    signatures: int
    head: bytes | None


def verify_chain(events: Iterable[Event], public_key: Ed25519PublicKey,
                 trusted: Checkpoint | None = None) -> Report:
    """Checks one actor's chain from its first event; raises VerifyError naming the first bad one.

    Catches changed data or type (hash), removed, inserted or reordered events (seq and
    parent links), changed times (stamps), signatures by another key, an unsigned tail,
    and, given a checkpoint the verifier already holds, a chain shorter than it or not
    extending it.
    """
    actor: str | None = None
    prev: Event | None = None
    signed_upto = -1
    signatures = 0
    count = 0
    for ev in events:
        if actor is None:
            actor = ev.actor_id
        elif ev.actor_id != actor:
            raise VerifyError(f"event {ev.seq}: belongs to actor {ev.actor_id}, not {actor}", ev.seq)
        expected_seq = 0 if prev is None else prev.seq + 1
        if ev.seq != expected_seq:
            what = "missing" if ev.seq > expected_seq else "repeated or out of order"
            raise VerifyError(f"event {expected_seq}: {what} (found seq {ev.seq} here)", expected_seq)
        parent = None if prev is None else prev.hash
        if not _same(ev.parent, parent):
            raise VerifyError(f"event {ev.seq}: parent hash does not match the previous event's hash", ev.seq)
        if not _same(event_hash(ev.actor_id, ev.seq, ev.parent, ev.type, ev.data), ev.hash):
            raise VerifyError(f"event {ev.seq}: hash does not match its contents (type or data changed)", ev.seq)
        if not _same(next_stamp(prev.stamp if prev else None, ev.hash, ev.time_ns), ev.stamp):
            raise VerifyError(f"event {ev.seq}: time stamp does not match (time changed)", ev.seq)
        if ev.signature is not None:
            cp = Checkpoint(ev.actor_id, ev.seq, ev.hash, ev.stamp, ev.signature)
            if not cp.verify(public_key):
                raise VerifyError(f"event {ev.seq}: signature is not valid for this public key", ev.seq)
            signed_upto = ev.seq
            signatures += 1
        if trusted is not None and ev.seq == trusted.seq and not _same(ev.hash, trusted.hash):
            raise VerifyError(f"event {ev.seq}: differs from the trusted checkpoint (the chain was rewritten)",
                              ev.seq)
        prev = ev
        count += 1
    if trusted is not None:
        if not trusted.verify(public_key):
            raise VerifyError("the checkpoint's signature is not valid for this public key", trusted.seq)
        if actor is not None and trusted.actor_id != actor:
            raise VerifyError(f"the checkpoint is for actor {trusted.actor_id}, not {actor}", trusted.seq)
        if count < trusted.length:
            raise VerifyError(f"event {count}: missing; the chain ends before the trusted checkpoint "
                              f"({trusted.length} events)", count)
    if prev is not None and signed_upto != prev.seq:
        raise VerifyError(f"event {signed_upto + 1}: not covered by any signature (unsigned tail)", signed_upto + 1)
    return Report(actor or (trusted.actor_id if trusted else ""), count, signatures, prev.hash if prev else None)


def _same(a: bytes | None, b: bytes | None) -> bool:
    if a is None or b is None:
        return a is b
    return hmac.compare_digest(a, b)

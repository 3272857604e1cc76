"""Writes tests/vectors/: a small signed chain for independent verifiers (deterministic).

    python scripts/make_vectors.py        # rewrites the files; git diff should show nothing

The key is derived from a fixed seed, Ed25519 signatures are deterministic, and times are
fixed, so the output is the same on every run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from theater import keys
from theater.events import Checkpoint, Event, checkpoint_message, encode_data, event_hash, next_stamp

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors"
ACTOR = "00000000-0000-4000-8000-000000000001"
SEED = hashlib.sha256(b"theater chain format v1 test vector").digest()
T0 = 1_795_000_000_000_000_000


def build() -> tuple[list[Event], Ed25519PrivateKey]:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    contents = [
        ("lifecycle/start", {"incarnation": 1, "mode": "init", "state": None}),
        ("wasm", {"event": "call", "function": "theater:simple/actor.init", "params": [ACTOR]}),
        ("theater:simple/runtime/log", {"input": ["counter started"], "output": None}),
        ("wasm", {"event": "result", "function": "theater:simple/actor.init", "result": []}),
        ("wasm", {"event": "call", "function": "theater:simple/message-server-client.handle-request",
                  "params": ["r1", b"+1"]}),
        ("wasm", {"event": "result", "function": "theater:simple/message-server-client.handle-request",
                  "result": [b"1"], "state": b"1"}),
    ]
    events: list[Event] = []
    parent, stamp = None, None
    for seq, (type_, value) in enumerate(contents):
        data = encode_data(value)
        h = event_hash(ACTOR, seq, parent, type_, data)
        t = T0 + seq * 1_000_000
        stamp = next_stamp(stamp, h, t)
        sig = key.sign(checkpoint_message(ACTOR, seq, h, stamp)) if seq in (3, 5) else None
        events.append(Event(ACTOR, seq, parent, type_, data, h, t, stamp, sig))
        parent = h
    return events, key


def main() -> None:
    events, key = build()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "chain-v1.jsonl").write_bytes(b"".join(orjson.dumps(e.to_json()) + b"\n" for e in events))
    (OUT / "chain-v1.pub").write_text(keys.public_hex(key.public_key()) + "\n")
    last = events[-1]
    cp = Checkpoint(ACTOR, last.seq, last.hash, last.stamp, key.sign(checkpoint_message(
        ACTOR, last.seq, last.hash, last.stamp)))
    (OUT / "chain-v1.checkpoint.json").write_bytes(orjson.dumps(cp.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {len(events)} events to {OUT}")


if __name__ == "__main__":
    main()

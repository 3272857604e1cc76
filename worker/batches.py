"""Events as a worker ships them to the chain: encoded (canonical CBOR), hashed and linked
in batches, and the ``append`` message that carries a batch (docs/protocol.md, Chain)."""

from __future__ import annotations

from typing import Any

from theater import protocol
from theater.events import encode_data, event_hash

Pending = tuple[int, str, Any, int, bool]      # an event numbered, not yet encoded: (seq, type, value, time, state?)
Batch = list[tuple[dict[str, Any], bytes]]     # events encoded: (meta, data) each


def encode_events(actor_id: str, head: bytes | None, pending: list[Pending]) -> tuple[Batch, bytes | None]:
    """Encodes and hashes events after ``head``; the batch, and the new head."""
    batch: Batch = []
    for seq, event_type, value, t, state_changed in pending:
        data = encode_data(value)
        head = event_hash(actor_id, seq, head, event_type, data)
        # no parent: the chain links each event to its own head, and the hash proves they agree
        meta: dict[str, Any] = {"seq": seq, "hash": head.hex(), "type": event_type, "time_ns": t}
        if state_changed:
            meta["state"] = 1
        batch.append((meta, data))
    return batch, head


def append_message(actor_id: str, batch: Batch, sync: bool = False) -> list[bytes]:
    """The chain's ``append`` of a batch: all the events' data in one frame (one send, not n)."""
    header: dict[str, Any] = {"k": "append", "actor": actor_id, "events": [m for m, _ in batch],
                              "sizes": [len(d) for _, d in batch]}
    if sync:
        header["sync"] = True
    return protocol.encode(header, b"".join(d for _, d in batch))

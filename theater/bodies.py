"""Event data as readers show it, whatever a worker wrote there (``body_of``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

# How deep ``body_of`` follows nested lists and maps: cbor2 decodes 400 levels, and orjson
# refuses more than 255 (a `theater events --json` or export failed at a worker's 300).
BODY_DEPTH = 64
# How long a repr stands in for a value JSON has no type for (a tag, a set, a 200-bit integer).
BODY_REPR = 200


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Event data that is not CBOR: what ``body_of`` gives for it, shown as what it is."""

    size: int

    def __repr__(self) -> str:
        return f"(undecodable data: {self.size} bytes)"


def body_of(data: bytes) -> Any:
    """An event's data decoded to show, whatever it holds: a worker writes its own events' data,
    and one that escaped its sandbox may write anything the chain accepts (`logs`, `inspect`,
    `export` and the console's chain page failed on such data with a traceback). Maps, lists,
    text, bytes, floats, booleans, null and 64-bit integers as decoded, map keys as text,
    nesting past BODY_DEPTH as "...", any other value (a tag, a set, a larger integer) as its
    repr cut to BODY_REPR characters; data that is not CBOR as ``Undecodable``. Readers still
    check the shape they expect (a list where a map was meant)."""
    try:
        return _plain(cbor2.loads(data), BODY_DEPTH)
    except Exception:           # cbor2 raises more than CBORDecodeError (its tags: ValueError, OverflowError...)
        return Undecodable(len(data))


def _plain(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind in (str, bytes, bool, float, type(None)) or (kind is int and -(1 << 63) <= value < 1 << 64):
        return value
    if kind in (dict, list) and depth == 0:
        return "..."
    if kind is dict:
        return {k if type(k) is str else _cut(repr(k)): _plain(v, depth - 1) for k, v in value.items()}
    if kind is list:
        return [_plain(v, depth - 1) for v in value]
    return _cut(repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= BODY_REPR else text[:BODY_REPR - 3] + "..."

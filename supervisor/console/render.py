"""How the console shows values: events as rows, long data shortened, sizes and times for people.

Nothing here escapes HTML: the templates do (Jinja2 with autoescape on), and the pages' script
sets text only with ``textContent``. What this module makes is data, the same for the pages
and the JSON API.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from theater.bodies import Undecodable, body_of
from theater.events import Event, event_hash, readable

# What a page shows of one value: strings cut at this many characters, lists at this many items.
PREVIEW_CHARS = 2000
PREVIEW_ITEMS = 50


def shorten(value: Any, chars: int = PREVIEW_CHARS) -> Any:
    """``value`` with long strings and lists cut (saying how much was left out)."""
    if isinstance(value, str):
        return value if len(value) <= chars else f"{value[:chars]}… ({len(value) - chars} more characters)"
    if isinstance(value, dict):
        return {k: shorten(v, chars) for k, v in value.items()}
    if isinstance(value, list):
        head = [shorten(v, chars) for v in value[:PREVIEW_ITEMS]]
        return head + ([f"… ({len(value) - PREVIEW_ITEMS} more items)"] if len(value) > PREVIEW_ITEMS else [])
    return value


def body(data: bytes) -> Any:
    """An event's data decoded (inputs and outputs), bytes as {"utf8"} or {"b64"}; None if it is
    not CBOR (a worker writes its own events' data, and a tampered store may hold anything: it is
    still shown, and still verified)."""
    decoded = body_of(data)
    return None if isinstance(decoded, Undecodable) else readable(decoded)


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def live_event(meta: dict[str, Any], data: bytes) -> dict[str, Any]:
    """An event as the live view gets it (``events`` on the stream): its data shortened."""
    return {"seq": meta.get("seq"), "type": meta.get("type"), "time_ns": meta.get("time_ns"), "hash": meta.get("hash"),
            "signed": bool(meta.get("sig")), "size": len(data),
            "body": shorten(body(data), 300)}


def event_row(ev: Event) -> dict[str, Any]:
    """An event as the chain page shows it: its inputs and outputs apart when it has them, and
    whether its hash matches its contents (recomputed here: a changed type or data shows at once)."""
    decoded = body(ev.data)
    parts: list[tuple[str, str]]
    if isinstance(decoded, dict) and ("input" in decoded or "output" in decoded):
        parts = [(k, pretty(shorten(v))) for k, v in decoded.items()]
    else:
        parts = [("data", pretty(shorten(decoded)) if decoded is not None else f"({len(ev.data)} bytes, not CBOR)")]
    return {"seq": ev.seq, "type": ev.type, "time": when(ev.time_ns), "hash": ev.hash.hex(),
            "parent": ev.parent.hex() if ev.parent else None, "signed": ev.signature is not None,
            "size": len(ev.data), "parts": parts,
            "compact": orjson.dumps(shorten(decoded, 300), option=orjson.OPT_NON_STR_KEYS).decode(),
            "hash_ok": event_hash(ev.actor_id, ev.seq, ev.parent, ev.type, ev.data) == ev.hash}


def when(time_ns: int | float | None) -> str:
    """A wall-clock time as people read it (UTC, to the millisecond)."""
    if not time_ns:
        return ""
    seconds = time_ns / 1e9 if time_ns > 1e12 else float(time_ns)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def size(n: int | float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def seconds(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s * 1000:.0f}ms" if s < 1 else f"{s:g}s"

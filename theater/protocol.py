"""The wire protocol: every ZeroMQ message is ``[header, *frames]``.

The header is an orjson object with ``k`` (the kind) and the kind's fields; bytes travel
as the following raw frames, never inside JSON. A request carries ``id``; its reply
carries ``re`` = that id and is either ``ok`` (fields and frames of the answer) or
``error`` (``code``, ``error``). This module alone turns messages into frames and
back, and checks each header against the table below; ``docs/protocol.md`` describes
the same table for people.

Planes (who talks to whom):
  management  client DEALER -> server ROUTER     ($THEATER_HOME/run/theater.sock or tcp+CURVE)
  control     worker DEALER -> server ROUTER     (run/control.sock; identity = actor id)
  data        worker DEALER -> worker ROUTER     (run/w/<pid>.sock; identity = sender actor id)
  chain       worker/server DEALER -> chain ROUTER (run/chain.sock); chain PUB (run/events.sock)
  gateway     worker/server DEALER -> gateway ROUTER (run/gateway.sock; senders known by their pid)
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import ProtocolError, TheaterError

MAX_HEADER = 4 << 20            # one header, JSON
MAX_INT = (1 << 63) - 1         # integers on the wire fit a signed 64-bit (SQLite's INTEGER)
MAX_MESSAGE = 64 << 20          # ZeroMQ MAXMSGSIZE on every socket that faces a client
# The most bytes one message carries beside its header. Past MAX_MESSAGE, ZeroMQ drops the
# connection without a word, so senders check this first and say so (issue 16, finding 5).
MAX_PAYLOAD = MAX_MESSAGE - MAX_HEADER

S, N, B, L, D = str, int, bool, list, dict

# Optional fields of requests: checked wherever they appear (None allowed; replies carry
# whatever they answer). A wrong type is refused here, so no handler ever sees one.
OPTIONAL: dict[str, Any] = {
    "since": N, "limit": N, "types": L, "has_state": B, "has_init": B, "has_data": B, "resume": B,
    "actor": S, "name": S, "rid": S, "ch": S, "what": S, "has_body": B, "tool": S,
}

# kind -> (required fields and their types, minimum number of frames)
KINDS: dict[str, tuple[dict[str, Any], int]] = {
    # replies
    "ok": ({"re": S}, 0),
    "error": ({"re": S, "code": S, "error": S}, 0),
    # management: client -> server
    "ping": ({"id": S}, 0),
    "start": ({"id": S, "manifest": S, "source": S, "base": S}, 1),   # frames: component[, init state]
    "stop": ({"id": S, "actor": S}, 0),
    "list": ({"id": S}, 0),
    "inspect": ({"id": S, "actor": S}, 0),
    "state": ({"id": S, "actor": S}, 0),
    "send": ({"id": S, "actor": S}, 1),
    "request": ({"id": S, "actor": S}, 1),
    "channel_open": ({"id": S, "actor": S}, 1),
    "channel_send": ({"id": S, "channel": S}, 1),
    "channel_close": ({"id": S, "channel": S}, 0),
    "events": ({"id": S, "actor": S}, 0),
    "subscribe": ({"id": S, "actor": S}, 0),
    "unsubscribe": ({"id": S, "sub": S}, 0),
    "verify": ({"id": S}, 0),
    "head": ({"id": S, "actor": S}, 0),
    "key": ({"id": S}, 0),
    "chains": ({"id": S}, 0),
    "tree": ({"id": S}, 0),
    "top": ({"id": S}, 0),
    "tools": ({"id": S}, 0),                   # running actors' [[mcp.tool]] tables
    "watch": ({"id": S}, 0),                   # then actors_changed pushes
    "unwatch": ({"id": S, "sub": S}, 0),
    # pushes from server to a client (no reply expected)
    "event": ({"sub": S}, 1),
    "missed": ({"sub": S, "count": N}, 0),
    "channel_message": ({"channel": S}, 1),
    "channel_closed": ({"channel": S}, 0),
    "compiling": ({"request": S, "component": S, "bytes": N}, 0),   # a start waits; "seconds" so far
    "actors_changed": ({"sub": S, "actor": S, "status": S}, 0),
    # control: worker -> server
    "hello": ({"actor": S, "pid": N, "endpoint": S}, 0),
    "ready": ({"actor": S}, 0),
    "failed": ({"actor": S, "reason": S, "error": S}, 0),     # with "id": the server acknowledges
    "exiting": ({"actor": S, "reason": S}, 0),
    "heartbeat": ({}, 0),
    "resolve": ({"id": S, "actor": S}, 0),
    "spawn": ({"id": S, "manifest": S}, 0),        # an actor granted `supervisor`, about its children
    "children": ({"id": S}, 0),
    "stop_child": ({"id": S, "child": S}, 0),
    "restart_child": ({"id": S, "child": S}, 0),
    "child_state": ({"id": S, "child": S}, 0),
    "child_events": ({"id": S, "child": S}, 0),
    # control: server -> worker
    "get_state": ({"id": S}, 0),
    "stop_actor": ({"reason": S}, 0),
    "peer": ({"actor": S}, 0),                 # endpoint moved or gone (endpoint = null)
    "chain_restarted": ({}, 0),
    # data plane: worker -> worker
    "msg": ({"what": S}, 0),                   # what: send | request | chan_open | chan_msg | chan_close
    "reply": ({"rid": S, "ok": B}, 0),
    "refused": ({"error": S}, 0),              # count (optional) one-way messages were turned away
    # chain plane
    "append": ({"actor": S, "events": L}, 0),  # one frame of data per event
    "ack": ({"actor": S, "seq": N}, 0),
    "nack": ({"actor": S, "error": S, "seq": N}, 0),
    "resume": ({"id": S, "actor": S}, 0),
    "record": ({"id": S, "actor": S, "type": S}, 1),  # the server appends a lifecycle event at the head
    "query": ({"id": S, "what": S}, 0),
    "shutdown": ({}, 0),                       # the server tells the chain (or the gateway) to finish and exit
    "bind": ({"actor": S, "pid": N}, 0),        # the server: this process is the actor's worker now
    "unbind": ({"actor": S}, 0),               # ... and now none is
    "chain_status": ({}, 0),                   # the chain to the server: why it refuses events (error), or not
    # gateway plane: server -> gateway (accepted from the server's pid only)
    "grant": ({"actor": S, "pid": N, "config": D}, 0),    # config: handler type -> its grant
    "revoke": ({"pid": N}, 0),
    # gateway plane: worker -> gateway (the sender's pid says which actor, and so which grant)
    "http": ({"id": S, "method": S, "uri": S, "headers": L}, 0),     # frame: the body, if has_body
    "store_call": ({"id": S, "op": S, "args": L}, 0),              # frame: content, for ops that take it
    "mcp": ({"id": S, "op": S, "server": S}, 0),                   # op list | call (tool; frame: arguments)
}


def encode(header: dict[str, Any], *frames: bytes) -> list[bytes]:
    return [orjson.dumps(header), *frames]


def decode(frames: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    """Checks and splits a message; raises ProtocolError with a reason a peer can read."""
    if not frames:
        raise ProtocolError("empty message")
    raw = frames[0]
    if len(raw) > MAX_HEADER:
        raise ProtocolError(f"header of {len(raw)} bytes is over the {MAX_HEADER}-byte limit")
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("header is not JSON (expected [JSON header, *binary frames])") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    kind = header.get("k")
    spec = KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ProtocolError(f"unknown message kind {kind!r}")
    fields, min_frames = spec
    for name, typ in fields.items():
        value = header.get(name)
        if not isinstance(value, typ) or (typ is int and not _integer(value, -MAX_INT - 1)):
            raise ProtocolError(f"{kind}: field {name!r} missing or not a {_NAMES[typ]}")
    for name in (header.keys() & OPTIONAL.keys()) - fields.keys() if kind not in ("ok", "error") else ():
        typ, value = OPTIONAL[name], header[name]
        if value is not None and (not isinstance(value, typ) or (typ is int and not _integer(value, 0))):
            wanted = f"an integer from 0 to {MAX_INT}" if typ is int else f"a {typ.__name__}"
            raise ProtocolError(f"{kind}: field {name!r} must be {wanted}")
    types = header.get("types")
    if types is not None and not all(isinstance(t, str) for t in types):
        raise ProtocolError(f"{kind}: field 'types' must be a list of strings")
    body = frames[1:]
    if len(body) < min_frames:
        raise ProtocolError(f"{kind}: expected at least {min_frames} binary frame(s), got {len(body)}")
    return header, body


_NAMES = {S: "string", N: "64-bit integer", B: "bool", L: "list"}


def _integer(value: Any, minimum: int) -> bool:
    """An int (not a bool) from ``minimum`` to MAX_INT: every integer from outside is range-checked,
    so none reaches SQLite or a fixed-width encoding out of range (issue 16, finding 6)."""
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_INT


def ok(request_id: str, **fields: Any) -> dict[str, Any]:
    return {"k": "ok", "re": request_id, **fields}


def error(request_id: str, exc: TheaterError) -> dict[str, Any]:
    return {"k": "error", "re": request_id, **exc.to_wire()}

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
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import ProtocolError, TheaterError

MAX_HEADER = 4 << 20            # one header, JSON
MAX_MESSAGE = 64 << 20          # ZeroMQ MAXMSGSIZE on every socket that faces a client

S, N, B, L = str, int, bool, list

# Optional fields of requests: checked wherever they appear (None allowed; replies carry
# whatever they answer). A wrong type is refused here, so no handler ever sees one.
OPTIONAL: dict[str, Any] = {
    "since": N, "limit": N, "types": L, "has_state": B, "has_init": B, "has_data": B, "resume": B,
    "actor": S, "name": S, "rid": S, "ch": S, "what": S,
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
    # pushes from server to a client (no reply expected)
    "event": ({"sub": S}, 1),
    "missed": ({"sub": S, "count": N}, 0),
    "channel_message": ({"channel": S}, 1),
    "channel_closed": ({"channel": S}, 0),
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
    "refused": ({"error": S}, 0),              # a one-way message was turned away (mailbox full)
    # chain plane
    "append": ({"actor": S, "events": L}, 0),  # one frame of data per event
    "ack": ({"actor": S, "seq": N}, 0),
    "nack": ({"actor": S, "error": S, "seq": N}, 0),
    "resume": ({"id": S, "actor": S}, 0),
    "record": ({"id": S, "actor": S, "type": S}, 1),  # the server appends a lifecycle event at the head
    "query": ({"id": S, "what": S}, 0),
    "shutdown": ({}, 0),                       # the server tells the chain to finish and exit
    "bind": ({"actor": S, "pid": N}, 0),        # the server: this process is the actor's worker now
    "unbind": ({"actor": S}, 0),               # ... and now none is
    "chain_status": ({}, 0),                   # the chain to the server: why it refuses events (error), or not
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
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ProtocolError(f"{kind}: field {name!r} missing or not a {typ.__name__}")
    for name in (header.keys() & OPTIONAL.keys()) - fields.keys() if kind not in ("ok", "error") else ():
        typ, value = OPTIONAL[name], header[name]
        if value is not None and (
                not isinstance(value, typ) or (typ is int and (isinstance(value, bool) or value < 0))):
            wanted = "a non-negative integer" if typ is int else f"a {typ.__name__}"
            raise ProtocolError(f"{kind}: field {name!r} must be {wanted}")
    types = header.get("types")
    if types is not None and not all(isinstance(t, str) for t in types):
        raise ProtocolError(f"{kind}: field 'types' must be a list of strings")
    body = frames[1:]
    if len(body) < min_frames:
        raise ProtocolError(f"{kind}: expected at least {min_frames} binary frame(s), got {len(body)}")
    return header, body


def ok(request_id: str, **fields: Any) -> dict[str, Any]:
    return {"k": "ok", "re": request_id, **fields}


def error(request_id: str, exc: TheaterError) -> dict[str, Any]:
    return {"k": "error", "re": request_id, **exc.to_wire()}

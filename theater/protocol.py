"""The wire protocol: every ZeroMQ message is ``[header, *frames]``.

The header is an orjson object with ``k`` (the kind) and the kind's fields; bytes travel
as the following raw frames, never inside JSON. A request carries ``id``; its reply
carries ``re`` = that id and is either ``ok`` (fields and frames of the answer) or
``error`` (``code``, ``error``). This module alone turns messages into frames and
back, and checks each header against the table below; ``docs/protocol.md`` describes
the same table for people.

Planes (who talks to whom):
  management  client DEALER -> server ROUTER     ($THEATER_HOME/run/theater.sock or tcp+CURVE)
  control     worker DEALER -> server ROUTER     (run/control.sock; senders known by their pid)
  data        worker DEALER -> worker ROUTER     (run/w/<pid>.sock; senders known by their ticket)
  chain       worker/server DEALER -> chain ROUTER (run/chain.sock); chain PUB (run/events.sock)
  gateway     worker/server DEALER -> gateway ROUTER (run/gateway.sock; senders known by their pid)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import ProtocolError, TheaterError

MAX_HEADER = 4 << 20            # one header, JSON
MAX_INT = (1 << 63) - 1         # integers on the wire fit a signed 64-bit (SQLite's INTEGER)
MAX_MESSAGE = 64 << 20          # ZeroMQ MAXMSGSIZE on every socket that faces a client
# The most bytes one message carries beside its header. Past MAX_MESSAGE, ZeroMQ drops the
# connection without a word, so senders check this first and say so (issue 16, finding 5).
MAX_PAYLOAD = MAX_MESSAGE - MAX_HEADER
# Bytes an actor may have on their way to a client on one channel (sent, not yet acknowledged
# by the client's ``channel_ack``); past it its ``send-on-channel`` waits. One message may always
# go when nothing is on its way, so a single message of up to MAX_PAYLOAD still passes. A client
# acknowledges what it has read once that is half of this (or it has read all there is).
CLIENT_WINDOW = 4 << 20

# A query's ``types`` (theater events --type): globs, each matched against every type of the chain
# read, and compiled and cached. A worker may query its own chain: 100,000 of them held the chain's
# loop, every actor's commits, for seconds a query.
MAX_TYPES = 32
MAX_TYPE_LENGTH = 256

S, N, B, L, D = str, int, bool, list, dict

# Optional fields of requests: checked wherever they appear (None allowed; replies carry
# whatever they answer). A wrong type is refused here, so no handler ever sees one.
OPTIONAL: dict[str, Any] = {
    "id": S, "since": N, "limit": N, "types": L, "has_state": B, "has_init": B, "has_data": B, "resume": B,
    "actor": S, "name": S, "rid": S, "ch": S, "what": S, "has_body": B, "tool": S,
}


@dataclass(frozen=True)
class Kind:
    """One kind of message: its required fields, the frames it carries, and, for a request, the
    kind that answers it ("ok" stands for ``ok`` or ``error``, with ``re`` = the request's id)."""

    fields: dict[str, Any]
    frames: int = 0                            # at least this many binary frames
    reply: str | None = None                   # None: a notice or a push, nobody answers it
    optional: dict[str, Any] = field(default_factory=dict)    # its own, beside OPTIONAL


KINDS: dict[str, Kind] = {
    # replies
    "ok": Kind({"re": S}),
    "error": Kind({"re": S, "code": S, "error": S}),
    # management: client -> server
    "ping": Kind({"id": S}, reply="ok"),
    # frames: the component (empty when it is named by component_sha), and the initial state if any
    "start": Kind({"id": S, "manifest": S, "source": S, "base": S}, frames=1, reply="ok",
                  optional={"component_sha": S}),
    "stop": Kind({"id": S, "actor": S}, reply="ok"),
    "restart": Kind({"id": S, "actor": S}, reply="ok"),
    "prune": Kind({"id": S}, reply="ok"),
    "list": Kind({"id": S}, reply="ok"),
    "inspect": Kind({"id": S, "actor": S}, reply="ok"),
    "state": Kind({"id": S, "actor": S}, reply="ok"),
    "send": Kind({"id": S, "actor": S}, frames=1, reply="ok"),
    "request": Kind({"id": S, "actor": S}, frames=1, reply="ok"),
    "channel_open": Kind({"id": S, "actor": S}, frames=1, reply="ok"),
    "channel_send": Kind({"id": S, "channel": S}, frames=1, reply="ok"),
    "channel_close": Kind({"id": S, "channel": S}, reply="ok"),
    "channel_ack": Kind({"channel": S, "bytes": N}),        # a notice: bytes of the channel's messages read
    "events": Kind({"id": S, "actor": S}, reply="ok"),
    "subscribe": Kind({"id": S, "actor": S}, reply="ok"),
    "unsubscribe": Kind({"id": S, "sub": S}, reply="ok"),
    "verify": Kind({"id": S}, reply="ok"),
    "head": Kind({"id": S, "actor": S}, reply="ok"),
    "key": Kind({"id": S}, reply="ok"),
    "chains": Kind({"id": S}, reply="ok"),
    "tree": Kind({"id": S}, reply="ok"),
    "top": Kind({"id": S}, reply="ok"),
    "tools": Kind({"id": S}, reply="ok"),                   # running actors' [[mcp.tool]] tables
    "watch": Kind({"id": S}, reply="ok"),                   # then actors_changed pushes
    "unwatch": Kind({"id": S, "sub": S}, reply="ok"),
    # pushes from server to a client (no reply expected)
    "event": Kind({"sub": S}, frames=1),
    "missed": Kind({"sub": S, "count": N}),
    "channel_message": Kind({"channel": S}, frames=1),
    "channel_closed": Kind({"channel": S}, optional={"error": S}),    # error: the server closed it, and why
    "compiling": Kind({"request": S, "component": S, "bytes": N}),   # a start waits; "seconds" so far
    "actors_changed": Kind({"sub": S, "actor": S, "status": S}),
    "keepalive": Kind({}),      # to a client holding a channel, subscription or watch: to be ignored
    # control: worker -> server
    "hello": Kind({"id": S, "actor": S, "pid": N, "endpoint": S}, reply="ok"),    # answered with how to start
    "ready": Kind({"actor": S}),
    "failed": Kind({"actor": S, "reason": S, "error": S}, reply="ok"),    # with "id": the server acknowledges
    "exiting": Kind({"actor": S, "reason": S}, reply="ok"),
    "heartbeat": Kind({}),
    "resolve": Kind({"id": S, "actor": S}, reply="ok"),    # answered with its endpoint, ticket, incarnation
    # tell me (peer) when this incarnation ends; at once if it has: a channel's opener I never resolved
    "watch_peer": Kind({"actor": S, "incarnation": N}),
    "spawn": Kind({"id": S, "manifest": S}, reply="ok",    # an actor granted `supervisor`, about its children
                  optional={"within_ms": N}),                 # the parent's wait for the child's init
    "children": Kind({"id": S}, reply="ok"),
    "stop_child": Kind({"id": S, "child": S}, reply="ok"),
    "restart_child": Kind({"id": S, "child": S}, reply="ok", optional={"within_ms": N}),
    "child_state": Kind({"id": S, "child": S}, reply="ok"),
    "child_events": Kind({"id": S, "child": S}, reply="ok"),
    # control: server -> worker
    "get_state": Kind({"id": S}, reply="ok"),
    "stop_actor": Kind({"reason": S}),
    "peer": Kind({"actor": S}, optional={"incarnation": N}),     # that incarnation stopped or restarted
    "chain_restarted": Kind({}),
    # the client read ``bytes`` of what you sent on channel ``ch``; with ``error``: the server closed
    # the channel (why), and what you send on it no longer goes anywhere
    "chan_ack": Kind({"ch": S, "bytes": N}, optional={"error": S}),
    # data plane: worker -> worker
    # what: send | request | chan_open | chan_msg | chan_close; with "rid" it is answered by a reply;
    # from a peer, with its sender's id and ticket (theater.tickets), which its receiver checks; a
    # chan_open, with its opener's incarnation (its acceptor asks the server to watch it: watch_peer)
    "msg": Kind({"what": S}, reply="reply", optional={"from": S, "t": S, "incarnation": N}),
    "reply": Kind({"rid": S, "ok": B}, optional={"code": S, "error": S}),
    "refused": Kind({"error": S}),              # count (optional) one-way messages were turned away
    "took": Kind({"count": N}),                 # count one-way messages were taken (their calls stored)
    # chain plane
    # one frame holding every event's data, cut by "sizes"; "sync": acknowledge at once (ack or nack)
    "append": Kind({"actor": S, "events": L}, optional={"sizes": L, "sync": B}, reply="ack"),
    "ack": Kind({"actor": S, "seq": N}),
    "nack": Kind({"actor": S, "error": S, "seq": N}),
    "resume": Kind({"id": S, "actor": S}, reply="ok"),
    # the server appends a lifecycle event at the head
    "record": Kind({"id": S, "actor": S, "type": S}, frames=1, reply="ok"),
    "query": Kind({"id": S, "what": S}, reply="ok"),
    "shutdown": Kind({}),                       # the server tells the chain (or the gateway) to finish and exit
    # the server: this process is the actor's worker now, and the actor's event rates (chain.rates)
    "bind": Kind({"actor": S, "pid": N}, optional={"events_per_second": N, "event_bytes_per_second": N}),
    "unbind": Kind({"actor": S}),               # ... and now none is
    "chain_status": Kind({}),                   # the chain to the server: why it refuses events (error), or not
    # gateway plane: server -> gateway (accepted from the server's pid only)
    "grant": Kind({"actor": S, "pid": N, "config": D}),    # config: handler type -> its grant
    "revoke": Kind({"pid": N}),
    # gateway plane: worker -> gateway (the sender's pid says which actor, and so which grant)
    "http": Kind({"id": S, "method": S, "uri": S, "headers": L}, reply="ok"),    # frame: the body, if has_body
    "store_call": Kind({"id": S, "op": S, "args": L}, reply="ok"),    # frame: content, for ops that take it
    "mcp": Kind({"id": S, "op": S, "server": S}, reply="ok"),    # op list | call (tool; frame: arguments)
}

# Each kind's optional fields (OPTIONAL and its own, less those it requires), merged once:
# ``decode`` runs for every message. Replies carry whatever they answer: none checked.
_OPTIONAL_OF: dict[str, dict[str, Any]] = {
    kind: {} if kind in ("ok", "error") else
    {name: typ for name, typ in {**OPTIONAL, **spec.optional}.items() if name not in spec.fields}
    for kind, spec in KINDS.items()}


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
    fields, min_frames = spec.fields, spec.frames
    for name, typ in fields.items():
        value = header.get(name)
        if not isinstance(value, typ) or (typ is int and not _integer(value, -MAX_INT - 1)):
            raise ProtocolError(f"{kind}: field {name!r} missing or not a {_NAMES[typ]}")
    optional = _OPTIONAL_OF[kind]
    for name in header.keys() & optional.keys():
        typ, value = optional[name], header[name]
        if value is not None and (not isinstance(value, typ) or (typ is int and not _integer(value, 0))):
            wanted = f"an integer from 0 to {MAX_INT}" if typ is int else f"a {typ.__name__}"
            raise ProtocolError(f"{kind}: field {name!r} must be {wanted}")
    types = header.get("types") if "types" in optional else None        # a reply's is anything
    if types is not None and (len(types) > MAX_TYPES or
                              not all(isinstance(t, str) and len(t) <= MAX_TYPE_LENGTH for t in types)):
        raise ProtocolError(f"{kind}: field 'types' must be a list of at most {MAX_TYPES} strings of at most "
                            f"{MAX_TYPE_LENGTH} characters")
    body = frames[1:]
    if len(body) < min_frames:
        raise ProtocolError(f"{kind}: expected at least {min_frames} binary frame(s), got {len(body)}")
    return header, body


def request_id(frames: list[bytes]) -> str:
    """The id of a request ``decode`` refused, if it can be read at all: the error answers it."""
    try:
        value = orjson.loads(frames[0]).get("id", "")
    except (orjson.JSONDecodeError, AttributeError, IndexError):
        return ""
    return value if isinstance(value, str) else ""


_NAMES = {S: "string", N: "64-bit integer", B: "bool", L: "list", D: "JSON object"}


def _integer(value: Any, minimum: int) -> bool:
    """An int (not a bool) from ``minimum`` to MAX_INT: every integer from outside is range-checked,
    so none reaches SQLite or a fixed-width encoding out of range (issue 16, finding 6)."""
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_INT


def ok(request_id: str, /, **fields: Any) -> dict[str, Any]:
    """An answer; ``fields`` may be anything (a worker's answer passed on), even ``request_id``."""
    return {"k": "ok", "re": request_id, **fields}


def error(request_id: str, exc: TheaterError) -> dict[str, Any]:
    return {"k": "error", "re": request_id, **exc.to_wire()}


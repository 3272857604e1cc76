"""``theater:simple/message-server-host`` and the ``message-server-client`` exports.

Messages go worker to worker: this actor's DEALER connects to the peer's inbox ROUTER
(address from the server's directory), and replies come back on the same connection.
Messages from outside (the CLI) arrive from the server on the control socket and are
answered there. Either way a message is a ``msg`` with ``what`` one of send, request,
chan_open, chan_msg, chan_close; a request or channel open is answered by a ``reply``
with the same ``rid``.

A channel closes at this end when its other end's incarnation ends (its next one knows none of
its channels). The opener hears it from the server as it resolved the acceptor; the acceptor
may never have written to the opener, so the opener's ``chan_open`` names its incarnation and
the acceptor asks the server to watch it (``Peers.follow``).

A channel whose other end is a client goes through the server, which holds what the client has
not read yet: its messages wait (``send-on-channel`` serves the sockets within the call's time)
while ``CLIENT_WINDOW`` bytes sent on it are unacknowledged; the server passes on the client's
acknowledgements (``chan_ack``), or closes the channel with the reason (``supervisor.channels``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from theater.errors import Refused
from theater.ids import new_channel_id, new_request_id
from theater.protocol import CLIENT_WINDOW, MAX_PAYLOAD

from ..mailbox import Incoming, Route
from ..peers import NO_CALL_WAIT, later
from ..values import Err, Ok, errors_as_err
from .base import Functions, Handler, register

INTERFACE = "theater:simple/message-server-host"
# Channels closed because their other end went, remembered (oldest forgotten first): a message
# that comes on one later is recorded here, its sender being gone.
GONE_KEPT = 1024
CLIENT = "theater:simple/message-server-client"


@dataclass
class Channel:
    peer: str | None          # the other actor's id, or None for an outside client
    route: Route | None       # how to reach an outside client (through the server)
    incarnation: int | None = None    # the other actor's (None: not known; closed when any ends)
    unacked: int = 0          # to a client: bytes sent on it that it has not acknowledged reading
    closed: str | None = None   # to a client: why the server closed it (its close is on its way to the actor)

    def fits(self, size: int) -> bool:
        """Whether a message of ``size`` bytes may go to the client now: within the window, or
        alone (nothing unacknowledged: one message up to MAX_PAYLOAD always goes)."""
        return not self.unacked or self.unacked + size <= CLIENT_WINDOW


@register
class MessageServer(Handler):
    """Messaging for one actor: its host functions and the exports that receive messages."""

    type = "message-server"
    kinds = dict.fromkeys(("send", "request", "chan_open", "chan_msg", "chan_close"), True)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.peers = self.host.peers
        self.outstanding: dict[str, Route] = {}     # requests answered later with respond-to-request
        self.channels: dict[str, Channel] = {}
        self.gone: dict[str, None] = {}             # closed when their other end went (GONE_KEPT)
        self.peers.on_moved.append(self._peer_moved)

    # ---- host functions -----------------------------------------------------------------

    def functions(self) -> Functions:
        return {INTERFACE: {
            "send": errors_as_err(self.send), "request": errors_as_err(self.request),
            "open-channel": errors_as_err(self.open_channel), "send-on-channel": errors_as_err(self.send_on_channel),
            "close-channel": errors_as_err(self.close_channel),
            "list-outstanding-requests": lambda: list(self.outstanding),
            "respond-to-request": self.respond, "cancel-request": self.cancel,
        }}

    def send(self, target: str, msg: bytes) -> Ok:
        _fits(msg)
        self.peers.send(target, {"k": "msg", "what": "send"}, msg)
        return Ok()

    def request(self, target: str, msg: bytes) -> Ok | Err:
        _fits(msg)
        rid = new_request_id()
        header, frames = self.peers.call(target, {"k": "msg", "what": "request", "rid": rid}, msg)
        if not header["ok"]:
            return Err(str(header.get("error", "request failed")))
        reply = frames[0] if frames else b""
        if why := self.host.over_limit(reply):
            return Err(f"the reply was refused: {why}")
        return Ok(reply)

    def open_channel(self, target: str, msg: bytes) -> Ok | Err:
        _fits(msg)
        ch, rid = new_channel_id(), new_request_id()
        header, frames = self.peers.call(target, {"k": "msg", "what": "chan_open", "rid": rid, "ch": ch,
                                                  "incarnation": self.peers.incarnation}, msg)
        if not header["ok"]:
            return Err(str(header.get("error", "channel refused")))
        if not header.get("accepted"):
            return Err(f"actor {target} did not accept the channel")
        peer = header.get("actor", target)
        if frames and (why := self.host.over_limit(frames[0])):     # closed again: the acceptor hears it
            self.peers.send(peer, {"k": "msg", "what": "chan_close", "ch": ch})
            return Err(f"the channel's first message was refused: {why}")
        self.channels[ch] = Channel(peer, None, self.peers.incarnation_of(peer))
        if frames:     # the accept carried a first message: it arrives like any other
            self.host.to_self("chan_msg", {"ch": ch}, frames[0])
        return Ok(ch)

    def send_on_channel(self, ch: str, msg: bytes) -> Ok | Err:
        _fits(msg)
        chan = self.channels.get(ch)
        if chan is None:
            return Err(f"no open channel {ch}")
        if chan.route is not None:      # a client's: within its window
            self._wait_for_credit(ch, chan, len(msg))
            chan.unacked += len(msg)
        return self._to_channel(chan, {"k": "msg", "what": "chan_msg", "ch": ch}, msg)

    def _wait_for_credit(self, ch: str, chan: Channel, size: int) -> None:
        """Serves the sockets until the client has read enough of the channel for ``size`` more
        bytes (it acknowledges half a window at a time); fails when the call's time is up, the
        actor is asked to stop, or the server closed the channel (both recorded)."""
        if chan.closed is None and chan.fits(size):
            return
        if chan.closed is None:
            host = self.host
            host.record("limit/waiting", {"channel": ch, "unacked": chan.unacked})
            deadline = host.call_deadline() or time.monotonic() + NO_CALL_WAIT
            if not host.wait_until(lambda: chan.closed is not None or chan.fits(size), deadline):
                why = (f"the client of channel {ch} is not reading: {chan.unacked} bytes sent on it are still "
                       f"unacknowledged as this call's time runs out")
                host.record("limit/refused", {"channel": ch, "error": why})
                raise Refused(why)
        if chan.closed is not None:
            raise Refused(chan.closed)

    def close_channel(self, ch: str) -> Ok | Err:
        chan = self.channels.pop(ch, None)
        if chan is None:
            return Err(f"no open channel {ch}")
        return self._to_channel(chan, {"k": "msg", "what": "chan_close", "ch": ch})

    def _to_channel(self, chan: Channel, header: dict[str, Any], *frames: bytes) -> Ok:
        if chan.peer is not None:
            self.peers.send(chan.peer, header, *frames)
        else:
            assert chan.route is not None
            self.host.reply(chan.route, header, *frames)
        return Ok()

    def respond(self, rid: str, response: bytes) -> Ok | Err:
        if len(response) > MAX_PAYLOAD:
            return Err(f"a reply of {len(response)} bytes is over the {MAX_PAYLOAD}-byte limit of one message")
        route = self.outstanding.pop(rid, None)
        if route is None:
            return Err(f"no outstanding request {rid}")
        self.host.reply(route, {"k": "reply", "rid": rid, "ok": True}, response)
        return Ok()

    def cancel(self, rid: str) -> Ok | Err:
        route = self.outstanding.pop(rid, None)
        if route is None:
            return Err(f"no outstanding request {rid}")
        self.host.reply(route, {"k": "reply", "rid": rid, "ok": False, "error": "request cancelled"})
        return Ok()

    # ---- receiving ----------------------------------------------------------------------

    def notices(self) -> Mapping[str, Callable[[dict[str, Any]], None]]:
        return {"chan_ack": self._acked}

    def _acked(self, header: dict[str, Any]) -> None:
        """The server: a client read ``bytes`` of what was sent on its channel; or (``error``) it
        closed the channel, which could not pass a message on (recorded here, and the actor hears
        the close after what arrived before it)."""
        ch = header["ch"]
        chan = self.channels.get(ch)
        if chan is None or chan.route is None or chan.closed is not None:
            return
        error = header.get("error")
        if error is not None:
            chan.closed = error
            self.host.record("limit/refused", {"channel": ch, "error": error})
            self.host.to_self("chan_close", {"ch": ch})
            return
        chan.unacked = max(0, chan.unacked - header["bytes"])

    def deliver(self, item: Incoming) -> None:
        """Runs the export for one mailbox item (the actor fails if the export does)."""
        what, h, payload = item.what, item.header, item.payload
        if what == "send":
            self._call("handle-send", (payload,), item)
        elif what == "request":
            out = self._call("handle-request", (h["rid"], payload), item)
            if out is None:
                return
            (reply,) = out
            if reply is None:
                self.outstanding[h["rid"]] = item.route
            elif len(reply) > MAX_PAYLOAD:
                self._oversized(item, "reply", len(reply))
            else:
                self.host.reply(item.route, {"k": "reply", "rid": h["rid"], "ok": True}, reply)
        elif what == "chan_open":
            out = self._call("handle-channel-open", (h["ch"], payload), item)
            if out is None:
                return
            (accept,) = out
            accepted = bool(accept["accepted"])
            message = accept["message"]
            if message is not None and len(message) > MAX_PAYLOAD:     # the opener would never hear
                self._oversized(item, "answer to a channel open", len(message))
                return
            if accepted:
                peer, incarnation = item.sender, h.get("incarnation")
                self.channels[h["ch"]] = Channel(peer, None if peer else item.route, incarnation)
                if peer is not None and incarnation is not None:     # told when the opener goes
                    self.peers.follow(peer, incarnation)
            reply = {"k": "reply", "rid": h["rid"], "ok": True, "accepted": accepted, "actor": self.host.actor_id}
            self.host.reply(item.route, reply, *([message] if message is not None else []))
        elif what == "chan_msg":
            if h["ch"] in self.channels:
                self._call("handle-channel-message", (h["ch"], payload), item)
            else:       # never opened here, or closed (either end restarted since): its sender hears it
                why = f"actor {self.host.actor_id} has no open channel {h['ch']} (closed, or restarted since)"
                if h["ch"] in self.gone:        # ... and a sender that is gone cannot: recorded here
                    self.host.record("limit/refused", {"from": item.sender, "error": why})
                self.host.refuse(item, why)
        elif what == "chan_close" and self.channels.pop(h["ch"], None) is not None:
            self._call("handle-channel-close", (h["ch"],), item)

    def _peer_moved(self, actor_id: str, incarnation: int | None) -> None:
        """The other end of some channels stopped or restarted (its next incarnation knows none of
        them): each is closed here too, and the actor hears it as a close, after what that end sent
        before it went (already in the inbox, read first). A later incarnation's channels stay."""
        closing = [ch for ch, chan in self.channels.items()
                   if chan.peer == actor_id and not later(chan.incarnation, incarnation)]
        if closing:
            self.host.read_inbox()
        for ch in closing:
            self.host.to_self("chan_close", {"ch": ch})
            self.gone[ch] = None
            if len(self.gone) > GONE_KEPT:
                del self.gone[next(iter(self.gone))]

    def _oversized(self, item: Incoming, what: str, size: int) -> None:
        """The actor answered with more than one message carries (ZeroMQ would drop it, and the
        connection, without a word): the asker hears why instead, once the call's events are
        stored, and the actor's chain says so (a channel it accepted is not open)."""
        error = (f"actor {self.host.actor_id}'s {what} of {size} bytes is over the {MAX_PAYLOAD}-byte "
                 f"limit of one message")
        self.host.record("limit/refused", {"to": item.sender, "error": error})
        self.host.reply(item.route, {"k": "reply", "rid": item.header["rid"], "ok": False, "code": "refused",
                                     "error": error})

    def _call(self, fn: str, params: tuple[Any, ...], item: Incoming) -> tuple[Any, ...] | None:
        if not self.host.exports(CLIENT, fn):
            self.host.refuse(item, f"actor {self.host.actor_id} does not export {CLIENT}.{fn}")
            return None
        return self.host.call(CLIENT, fn, params)

    def close(self, reason: str) -> None:
        """Tells everyone still waiting on this actor that it is gone."""
        for rid, route in self.outstanding.items():
            self.host.reply(route, {"k": "reply", "rid": rid, "ok": False, "error": reason}, quiet=True, held=False)
        self.outstanding.clear()


def _fits(msg: bytes) -> None:
    """What one wire message cannot carry is the sender's Err at once (its peer's inbox would
    drop it, and the connection, without a word); the receiver checks its own, lower, limit."""
    if len(msg) > MAX_PAYLOAD:
        raise Refused(f"a message of {len(msg)} bytes is over the {MAX_PAYLOAD}-byte limit of one message")

"""Messages from outside to actors: send, request, and channels with a client at one end.

The server relays these over the worker's control socket as the same ``msg`` the data
plane uses, and relays the worker's ``reply`` back to the client. What the actor writes on a
client's channel, and the client's acknowledgements of it, are ``supervisor.channels``.
"""

from __future__ import annotations

import orjson

from theater.errors import NotFound, ProtocolError, Refused
from theater.ids import new_channel_id

from .. import channels
from ..registry import ActorRecord
from .request import Request


def _fits(rec: ActorRecord, message: bytes) -> None:
    """A message over the actor's limit is refused here, where its client can still be told."""
    why = rec.spec.limits.too_large(rec.actor_id, len(message))
    if why is not None:
        raise ProtocolError(why)


CLIENT = "theater:simple/message-server-client"
# What each component exports, from the shape its compile checked (cache/): by SHA-256.
_exports: dict[str, dict[str, list[str]]] = {}


def _takes(req: Request, rec: ActorRecord, fn: str) -> None:
    """Refuses at once what the actor's component does not export: a one-way message would be
    handed to its worker, refused there with nobody to tell, and lost (the sender saw exit 0)."""
    sha = rec.spec.component
    if sha not in _exports:
        try:
            _exports[sha] = orjson.loads(req.services.home.shape(sha).read_bytes())["exports"]
        except (OSError, ValueError, KeyError, TypeError):
            return                  # not known here: the worker refuses it, as before
    if fn not in _exports[sha].get(CLIENT, []):
        what = "requests" if fn == "handle-request" else "one-way messages"
        raise Refused(f"actor {rec.actor_id} ({rec.name}) takes no {what}: its component does not export "
                      f"{CLIENT}.{fn}")


def send(req: Request) -> None:
    """{actor} [message] -> {} once the actor has run the message and its chain holds that call (a
    full mailbox makes it wait longer), or the reason it refused it; an error if the call fails the
    actor or its worker dies first."""
    rec = req.services.registry.running(req.header["actor"])
    _fits(rec, req.frames[0])
    _takes(req, rec, "handle-send")
    req.forward_to_worker(rec.actor_id, {"k": "msg", "what": "send"}, req.frames[0])


def request(req: Request) -> None:
    """{actor} [message] -> {} [reply], when the actor answers (handle-request or respond-to-request)."""
    rec = req.services.registry.running(req.header["actor"])
    _fits(rec, req.frames[0])
    _takes(req, rec, "handle-request")
    req.forward_to_worker(rec.actor_id, {"k": "msg", "what": "request"}, req.frames[0])


def channel_open(req: Request) -> None:
    """{actor} [first message] -> {channel, accepted} [the actor's first message?]; refused while
    the client holds CHANNELS_PER_CLIENT (each may have a window of messages in flight here)."""
    outbox = req.services.outbox
    rec = req.services.registry.running(req.header["actor"])
    _fits(rec, req.frames[0])
    if why := channels.too_many(outbox.channels, req.client):
        raise Refused(why)
    ch = new_channel_id()

    def answered(header: dict, frames: list[bytes]) -> None:
        if header["k"] == "error" or not header.get("ok"):
            req.fail(NotFound(str(header.get("error", "channel refused"))))
            return
        accepted = bool(header.get("accepted"))
        if accepted and (why := channels.too_many(outbox.channels, req.client)):    # others opened meanwhile
            outbox.to_worker(rec.actor_id, {"k": "msg", "what": "chan_close", "ch": ch})
            req.fail(Refused(why))
            return
        if accepted:
            outbox.channels.add(ch, req.client, rec.actor_id)
        req.ok(*frames, channel=ch, accepted=accepted, actor=rec.actor_id)
    outbox.ask_worker(rec.actor_id, {"k": "msg", "what": "chan_open", "ch": ch}, req.frames[0], then=answered)


def _channel(req: Request) -> tuple[str, str]:
    ch = req.header["channel"]
    chan = req.services.outbox.channels.get(ch)
    if chan is None or chan.client != req.client:
        raise NotFound(f"no open channel {ch}")
    return ch, chan.actor


def channel_send(req: Request) -> None:
    ch, actor_id = _channel(req)
    rec = req.services.registry.get(actor_id)
    if rec is not None:
        _fits(rec, req.frames[0])
    if not req.services.outbox.to_worker(actor_id, {"k": "msg", "what": "chan_msg", "ch": ch}, req.frames[0]):
        raise Refused(f"actor {actor_id} is not reachable: the message on channel {ch} was not sent")
    req.ok(channel=ch)


def channel_close(req: Request) -> None:
    ch, actor_id = _channel(req)
    req.services.outbox.channels.pop(ch)
    req.services.outbox.to_worker(actor_id, {"k": "msg", "what": "chan_close", "ch": ch})
    req.ok(channel=ch)


def channel_ack(req: Request) -> None:
    """{channel, bytes}, a notice (no answer): the client read that much of the actor's messages on
    its channel. One for a channel it does not hold (closed meanwhile) credits nothing."""
    channels.ack(req.services.outbox, req.client, req.header["channel"], req.header["bytes"])

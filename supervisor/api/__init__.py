"""The management API: one handler per request kind, looked up in ``HANDLERS``.

Each handler gets a ``Request`` and either answers at once (``req.ok(...)``/``req.fail(...)``)
or parks the answer until a worker, the chain or a process exit provides it. The CLI
half of each command lives in ``theater/cli``; the message shapes in ``theater/protocol``.
"""

from __future__ import annotations

from . import actors, chains, messages
from .request import Handler, Request

HANDLERS: dict[str, Handler] = {
    "ping": actors.ping,
    "start": actors.start,
    "stop": actors.stop,
    "restart": actors.restart,
    "prune": actors.prune,
    "list": actors.list_actors,
    "inspect": actors.inspect,
    "tree": actors.tree,
    "top": actors.top,
    "tools": actors.tools,
    "watch": actors.watch,
    "unwatch": actors.unwatch,
    "state": chains.state,
    "events": chains.events,
    "subscribe": chains.subscribe,
    "unsubscribe": chains.unsubscribe,
    "verify": chains.verify,
    "head": chains.head,
    "key": chains.key,
    "chains": chains.list_chains,
    "send": messages.send,
    "request": messages.request,
    "channel_open": messages.channel_open,
    "channel_send": messages.channel_send,
    "channel_close": messages.channel_close,
    "channel_ack": messages.channel_ack,
}

__all__ = ["HANDLERS", "Handler", "Request"]

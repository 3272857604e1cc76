"""The management API: one handler per request kind, looked up in ``HANDLERS``.

Each handler gets a ``Request`` and either answers at once (``req.ok(...)``/``req.fail(...)``)
or parks the answer until a worker, the chain or a process exit provides it. The CLI
half of each command lives in ``theater/cli``; the message shapes in ``theater/protocol``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from theater.errors import TheaterError

from ..services import Services


@dataclass
class Request:
    services: Services
    client: bytes
    id: str
    header: dict[str, Any]
    frames: list[bytes]

    def ok(self, *frames: bytes, **fields: Any) -> None:
        self.services.outbox.reply(self.client, self.id, fields, *frames)

    def fail(self, exc: TheaterError) -> None:
        self.services.outbox.fail(self.client, self.id, exc)

    def forward_to_worker(self, actor_id: str, header: dict[str, Any], *frames: bytes) -> None:
        self.services.outbox.ask_worker(actor_id, header, *frames, client=self.client, client_id=self.id)

    def forward_to_chain(self, header: dict[str, Any], *frames: bytes) -> None:
        self.services.outbox.ask_chain(header, *frames, client=self.client, client_id=self.id)


Handler = Callable[[Request], None]

from . import actors, chains, messages  # noqa: E402  (they import Request from here)

HANDLERS: dict[str, Handler] = {
    "ping": actors.ping,
    "start": actors.start,
    "stop": actors.stop,
    "list": actors.list_actors,
    "inspect": actors.inspect,
    "tree": actors.tree,
    "top": actors.top,
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
}

"""One management request, and how to answer it (now, or once a worker or the chain has)."""

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

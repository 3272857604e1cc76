"""supervisor/relay.py with a fake server: a follower that lost pushes is told so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import zmq

from supervisor.relay import Relay


class FakeServer:
    def __init__(self) -> None:
        self.full = False               # the follower's queue
        self.sent: list[dict[str, Any]] = []
        self.timers: list[Callable[[], None]] = []
        self.ids = 0

    def new_id(self) -> str:
        self.ids += 1
        return f"s{self.ids}"

    def later(self, _delay: float, fn: Callable[[], None]) -> None:
        self.timers.append(fn)

    def run_timers(self) -> None:
        due, self.timers = self.timers, []
        for fn in due:
            fn()

    def send_client(self, _client: bytes, header: dict[str, Any], *_frames: bytes) -> None:
        if self.full:
            raise zmq.Again()
        self.sent.append(header)


class FakeSub:
    def setsockopt(self, *_: Any) -> None:
        pass


def event(seq: int) -> list[bytes]:
    return [b"actor.A", orjson.dumps({"seq": seq}), b"data"]


def test_a_follower_hears_of_its_loss_once_its_queue_has_room_even_if_no_event_follows():
    """The loss used to be told only before the next event; an actor gone quiet left the
    follower waiting for its own silence check (5 s) to look in the store."""
    server = FakeServer()
    relay = Relay(server, FakeSub())        # type: ignore[arg-type]
    sub = relay.subscribe(b"client", "A")
    relay.published(event(0))
    server.full = True
    relay.published(event(1))
    relay.published(event(2))
    assert [h["k"] for h in server.sent] == ["event"]
    server.run_timers()                     # still full: tried again later
    assert [h["k"] for h in server.sent] == ["event"] and server.timers
    server.full = False                     # the follower reads again; the actor is quiet
    server.run_timers()
    assert server.sent[-1] == {"k": "missed", "sub": sub, "count": 2}
    assert not server.timers
    relay.published(event(3))               # and the next event is not preceded by it again
    assert [h["k"] for h in server.sent] == ["event", "missed", "event"]

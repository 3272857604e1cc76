"""supervisor/keepalive.py with a fake outbox: what a client that went away without a word held
in the server (channels, followed chains, watches) is ended, and a live client's is kept."""

from __future__ import annotations

from typing import Any

import zmq

from supervisor.channels import Channels
from supervisor.directory import Directory
from supervisor.keepalive import sweep
from supervisor.registry import Registry
from supervisor.relay import Relay


class Outbox:
    def __init__(self, gone: set[bytes], full: set[bytes]) -> None:
        self.channels = Channels()
        self.gone, self.full = gone, full
        self.pushed: list[tuple[bytes, dict[str, Any]]] = []
        self.workers: list[tuple[str, dict[str, Any]]] = []
        self.ids = 0

    def new_id(self) -> str:
        self.ids += 1
        return f"s{self.ids}"

    def send_client(self, client: bytes, header: dict[str, Any], *_frames: bytes) -> None:
        if client in self.gone:
            raise zmq.ZMQError(zmq.EHOSTUNREACH)
        if client in self.full:
            raise zmq.Again()
        self.pushed.append((client, header))

    def to_worker(self, actor: str, header: dict[str, Any], *_frames: bytes) -> bool:
        self.workers.append((actor, header))
        return True


class FakeSub:
    def __init__(self) -> None:
        self.topics: set[bytes] = set()

    def setsockopt(self, opt: int, topic: bytes) -> None:
        (self.topics.add if opt == zmq.SUBSCRIBE else self.topics.discard)(topic)


def test_a_gone_clients_channels_follows_and_watches_end_and_a_live_or_busy_clients_stay():
    """They were kept until something was pushed to the client: for a quiet actor's channel or a
    stopped actor's chain, for the server's life."""
    outbox = Outbox(gone={b"dead"}, full={b"busy"})
    sub = FakeSub()
    relay = Relay(outbox, sub)              # type: ignore[arg-type]
    directory = Directory(Registry(), outbox)       # type: ignore[arg-type]
    for client in (b"dead", b"live", b"busy"):
        outbox.channels.add(f"ch-{client.decode()}", client, "echo")
        relay.subscribe(client, f"actor-{client.decode()}")
        directory.watch(client)
    sweep(outbox, relay, directory)         # type: ignore[arg-type]
    assert outbox.channels.clients() == relay.clients() == directory.clients() == {b"live", b"busy"}
    assert outbox.channels.get("ch-dead") is None and outbox.channels.held_by(b"dead") == 0
    assert outbox.workers == [("echo", {"k": "msg", "what": "chan_close", "ch": "ch-dead"})]
    assert sub.topics == {b"actor.actor-live", b"actor.actor-busy"}
    assert outbox.pushed == [(b"live", {"k": "keepalive"})]

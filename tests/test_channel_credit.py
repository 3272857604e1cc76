"""A client's channel has a window of bytes in flight: a client that stops reading slows its actor
down, holds the server to a window of its messages, and loses none; what the server cannot pass
on closes the channel with the reason, told to both ends (supervisor/channels.py).

The actor is tests/actors/flood.wat: a message "count size" on a channel makes it send ``count``
numbered messages of ``size`` bytes back, within that one call.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
import zmq

from theater import protocol
from theater.client import Client
from theater.events import decode_data, readable
from theater.protocol import CLIENT_WINDOW

from .conftest import ACTORS, EXAMPLES, ROOT, Server, wait_for

MiB = 1 << 20
SEND = "theater:simple/message-server-host/send-on-channel"


def flood(tmp_path: Path, name: str, limits: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text((ACTORS / "flood.toml").read_text().replace(
        'name = "flood"', f'name = "{name}"').replace('"flood.wat"', f'"{ACTORS / "flood.wat"}"')
        + f"\n[limits]\n{limits}\n")
    return path


def chain(server: Server, actor: str, types: list[str], limit: int | None = None) -> list[dict[str, Any]]:
    with server.client(timeout=60) as c:
        return [{"type": e.type, "body": readable(decode_data(e.data))}
                for e in c.events(actor, types=types, limit=limit)]


def flooded(server: Server, actor: str) -> bool:
    """Whether the actor's call that sends the messages has ended."""
    return any(e["body"]["event"] == "result" and e["body"]["function"].endswith("handle-channel-message")
               for e in chain(server, actor, ["wasm"]))


def slow_client(server: Server) -> Client:
    """A client whose socket takes one message from the server at a time: what it has not read
    stays in the server (a client's own queue would otherwise take a thousand)."""
    c = Client(server.home, timeout=30)
    c.sock.close(linger=0)
    c.sock = c.ctx.socket(zmq.DEALER)
    c.sock.setsockopt(zmq.LINGER, 0)
    c.sock.setsockopt(zmq.RCVHWM, 1)
    c.sock.setsockopt(zmq.RCVBUF, 64 << 10)
    c.sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
    c.sock.connect(c.endpoint)
    return c


def test_a_client_that_stops_reading_holds_the_server_to_a_window_and_loses_nothing(server, tmp_path):
    """128 messages of 1 MiB to a client that reads none: the server held them all (it grew by the
    lot, and past its queue's bound ZeroMQ dropped them without a word). Now the actor's call waits
    once a window is unread, and goes on as the client reads: every message arrives, in order."""
    count = 128
    actor = server.client().start(flood(tmp_path, "flood", 'call_timeout = "300s"\n'
                                        'event_bytes_per_second = "1GiB"\nprocess_memory = "1GiB"'))["id"]
    server_proc = psutil.Process(server.pid)
    with slow_client(server) as c:
        header, _ = c.call("channel_open", b"", actor=actor)
        ch = header["channel"]
        baseline = server_proc.memory_info().rss
        c.call("channel_send", struct.pack("<II", count, MiB), channel=ch)
        wait_for(lambda: chain(server, actor, ["limit/waiting"]) or flooded(server, actor), timeout=60,
                 interval=0.2, what="the actor's call to wait for the client (or to end)")
        # the client reads nothing: the server holds a window of the messages, not the lot
        for _ in range(10):
            grew = server_proc.memory_info().rss - baseline
            assert grew < 64 * MiB, f"the server grew by {grew / MiB:.0f} MiB"
            sent = len(chain(server, actor, [SEND], limit=count // 2))
        assert sent <= CLIENT_WINDOW // MiB + 1 and not flooded(server, actor), sent
        (waiting, *_) = chain(server, actor, ["limit/waiting"])
        assert waiting["body"] == {"channel": ch, "unacked": CLIENT_WINDOW}, waiting

        numbers = []
        while len(numbers) < count:
            push = c.next_push(60)
            assert push is not None, f"{len(numbers)} of {count} messages arrived"
            h, frames = push
            assert (h["k"], h["channel"], len(frames[0])) == ("channel_message", ch, MiB), h
            numbers.append(struct.unpack_from("<I", frames[0])[0])
        assert numbers == list(range(count))
    wait_for(lambda: flooded(server, actor), timeout=60, interval=0.2, what="the actor's call to end")
    assert chain(server, actor, ["limit/refused"]) == []


# ---- the server's half, without a server -----------------------------------------------------

class Outbox:
    """What supervisor.channels uses of the server's Outbox; ``fail`` is what sending raises."""

    def __init__(self, fail: zmq.ZMQError | None = None) -> None:
        from supervisor.channels import Channels

        self.channels = Channels()
        self.fail = fail
        self.clients: list[tuple[bytes, dict[str, Any], tuple[bytes, ...]]] = []
        self.workers: list[tuple[str, dict[str, Any]]] = []

    def send_client(self, client: bytes, header: dict[str, Any], *frames: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.clients.append((client, header, frames))

    def push(self, client: bytes, header: dict[str, Any], *frames: bytes) -> bool:
        self.clients.append((client, header, frames))
        return True

    def to_worker(self, actor: str, header: dict[str, Any]) -> bool:
        self.workers.append((actor, header))
        return True


def chan_msg(size: int) -> tuple[dict[str, Any], list[bytes]]:
    return {"k": "msg", "what": "chan_msg", "ch": "ch1"}, [bytes(size)]


@pytest.mark.parametrize(("fail", "why"), [
    (zmq.Again(), "the client is not reading (the server's queue to it is full)"),
    (zmq.ZMQError(zmq.EHOSTUNREACH), "the client is gone (Host unreachable)"),
])
def test_a_message_the_server_cannot_push_closes_the_channel_with_the_reason(fail, why):
    """Past the client socket's bound (or to a client that is gone) the message was dropped and
    nobody heard: the actor's send was Ok, the client waited for what never came."""
    from supervisor import channels

    outbox = Outbox(fail)
    outbox.channels.add("ch1", b"client", "actor")
    channels.relay(outbox, "actor", *chan_msg(10))
    error = f"the server closed channel ch1: a message of 10 bytes could not be passed on: {why}"
    assert outbox.channels.get("ch1") is None
    assert outbox.clients == [(b"client", {"k": "channel_closed", "channel": "ch1", "error": error}, ())]
    assert outbox.workers == [("actor", {"k": "chan_ack", "ch": "ch1", "bytes": 0, "error": error})]


def test_a_worker_past_the_window_has_its_channel_closed_and_credit_is_the_clients_to_give():
    from supervisor import channels

    outbox = Outbox()
    outbox.channels.add("ch1", b"client", "actor")
    channels.relay(outbox, "actor", *chan_msg(CLIENT_WINDOW + 1))       # alone: one message always goes
    channels.relay(outbox, "other", *chan_msg(1))                       # not its channel: not passed on
    assert [h["k"] for _, h, _ in outbox.clients] == ["channel_message"]
    channels.ack(outbox, b"another client", "ch1", 100)                 # not its channel: credits nothing
    channels.ack(outbox, b"client", "ch1", -5)
    channels.ack(outbox, b"client", "ch1", 1 << 62)                     # no more than is in flight
    assert outbox.workers == [("actor", {"k": "chan_ack", "ch": "ch1", "bytes": CLIENT_WINDOW + 1})]
    channels.relay(outbox, "actor", *chan_msg(CLIENT_WINDOW // 2))
    channels.relay(outbox, "actor", *chan_msg(CLIENT_WINDOW // 2))       # exactly the window: fine
    assert outbox.channels.get("ch1").in_flight == CLIENT_WINDOW
    channels.relay(outbox, "actor", *chan_msg(1))
    error = (f"the server closed channel ch1: actor actor sent a message of 1 bytes on it with {CLIENT_WINDOW} "
             f"bytes not yet acknowledged by the client, past the channel's window of {CLIENT_WINDOW} bytes")
    assert outbox.clients[-1] == (b"client", {"k": "channel_closed", "channel": "ch1", "error": error}, ())
    assert outbox.workers[-1] == ("actor", {"k": "chan_ack", "ch": "ch1", "bytes": 0, "error": error})
    assert outbox.channels.get("ch1") is None


def test_a_client_holds_a_bounded_number_of_channels():
    from supervisor.channels import CHANNELS_PER_CLIENT, Channels, too_many

    chans = Channels()
    for i in range(CHANNELS_PER_CLIENT):
        chans.add(f"c{i}", b"client", "actor")
    assert too_many(chans, b"client") == (f"this client has {CHANNELS_PER_CLIENT} channels open, the most one "
                                          f"client may hold at once: close one first")
    assert too_many(chans, b"another") is None
    chans.pop("c0")
    assert too_many(chans, b"client") is None and chans.held_by(b"client") == CHANNELS_PER_CLIENT - 1


# ---- the worker's half, without a worker -------------------------------------------------------

class Host:
    """What MessageServer uses of the worker for a client's channel; ``acks`` arrive while it waits."""

    actor_id = "actor"

    def __init__(self) -> None:
        self.peers = SimpleNamespace(on_moved=[])
        self.said: list[tuple[Any, ...]] = []
        self.acks: list[dict[str, Any]] = []
        self.ms: Any = None

    def record(self, event_type: str, value: Any) -> None:
        self.said.append((event_type, value))

    def reply(self, route: Any, header: dict[str, Any], *frames: bytes) -> None:
        self.said.append(("sent", len(frames[0])))

    def to_self(self, what: str, header: dict[str, Any], payload: bytes = b"") -> None:
        self.said.append(("to_self", what, header))

    def call_deadline(self) -> float:
        return 1.0

    def wait_until(self, ready, deadline: float) -> bool:
        while self.acks and not ready():
            self.ms._acked(self.acks.pop(0))
        return ready()


def test_a_send_past_the_window_waits_for_the_clients_credit_and_fails_with_the_reason():
    from worker.handlers.message_server import INTERFACE, Channel, MessageServer
    from worker.values import Ok

    host = Host()
    host.ms = ms = MessageServer(host, {})
    assert set(ms.notices()) == {"chan_ack"}
    ms.channels["ch1"] = Channel(None, ("control", None))
    send = ms.functions()[INTERFACE]["send-on-channel"]
    half = CLIENT_WINDOW // 2
    for _ in range(2):
        assert isinstance(send("ch1", bytes(half)), Ok)
    host.acks.append({"ch": "ch1", "bytes": half})          # the client read half: the next one goes
    assert isinstance(send("ch1", bytes(half)), Ok)
    assert host.said == [("sent", half), ("sent", half), ("limit/waiting", {"channel": "ch1", "unacked": 2 * half}),
                         ("sent", half)]
    # the client reads no more: the call's time runs out (here at once)
    result = send("ch1", b"x")
    why = (f"the client of channel ch1 is not reading: {2 * half} bytes sent on it are still unacknowledged as "
           f"this call's time runs out")
    assert result.message == why and host.said[-1] == ("limit/refused", {"channel": "ch1", "error": why})
    # the server closes it: recorded, the actor hears the close, and a send on it is Err with the reason
    host.acks.append({"ch": "ch1", "bytes": 0, "error": "the server closed channel ch1: gone"})
    assert send("ch1", bytes(half)).message == "the server closed channel ch1: gone"
    assert host.said[-2:] == [("limit/refused", {"channel": "ch1", "error": "the server closed channel ch1: gone"}),
                              ("to_self", "chan_close", {"ch": "ch1"})]


def test_theater_channel_open_ends_with_the_reason_the_server_closed_the_channel(capsys):
    """It printed "closed" and exited 0, as if the actor had closed the channel."""
    from argparse import Namespace

    from theater.cli import messages
    from theater.errors import Refused

    error = "the server closed channel ch1: a message of 10 bytes could not be passed on: the client is gone"
    pushes = [({"k": "channel_closed", "channel": "ch1", "error": error}, [])]
    client = SimpleNamespace(call=lambda *_a, **_k: ({"channel": "ch1", "accepted": True}, []),
                             next_push=lambda _timeout: pushes.pop(0) if pushes else None)
    args = Namespace(actor="flood", data="", file=None)
    with pytest.raises(Refused, match=error):
        messages.channel_open(args, SimpleNamespace(client=client, json=False))
    assert capsys.readouterr().err.endswith("channel ch1 closed\n")


def test_a_killed_clients_channel_is_closed_and_a_live_one_is_not_bothered(server):
    """ZeroMQ does not say a client left: the channel of a `theater channel open` killed on a quiet
    actor stayed open in the server and the actor for the server's life (supervisor.keepalive)."""
    with server.client() as c:
        echo = c.start(EXAMPLES / "channel" / "echo.toml")["id"]
        # open before the other is killed: the sweep that finds that one gone pushes a keepalive here too
        header, _ = c.call("channel_open", b"hi", actor=echo)
        killed = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "channel", "open",
                                   echo, "hi"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
        try:
            assert killed.stdout is not None and killed.stdout.readline() == b"welcome\n"
        finally:
            killed.kill()
            killed.wait()
        wait_for(lambda: b"channel closed" in server.cli("logs", echo).out, timeout=30, what="the channel's close")
        assert c.next_push(0) is None          # the server's keepalives were not handed out
        c.call("channel_send", b"still", channel=header["channel"])
        push = c.next_push(30)
        assert push is not None and push[1] == [b"echo: still"]

"""Back-pressure, not loss: a receiver that does not keep up slows its senders down.

One-way sends to a full mailbox wait for room within the sender's call deadline; they fail
only when the receiver is hung past that deadline, stopped, or dead, and what is then not
delivered is refused to the sender and recorded in its chain. The sender is the probe
(``O<N> <actor>`` sends N numbered messages, then one request), the receiver a probe
whose chain records every message it took, so their order can be read back. The same loop
from a componentize-py sender: tests/guests/counter-py answers ``O<N> <actor>`` the same way.
A "hung" receiver is its worker stopped with SIGSTOP: a hang the test controls.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import psutil
import pytest

from theater import protocol
from theater.client import Client
from theater.errors import TheaterError
from theater.events import decode_data, readable

from .conftest import ACTORS, Server, request_in_thread, send_in_thread, wait_for
from .test_big_components import py_manifest
from .toolchains import precompiled

SEND = "theater:simple/message-server-host/send"


# A sender's call waits for room as long as its deadline allows: wide, for a loaded host.
SENDER = 'call_timeout = "300s"'


def probe(tmp_path: Path, name: str, limits: str = "") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{ACTORS / "probe.wat"}"\n\n'
                    '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n\n'
                    f'[restart]\ntype = "temporary"\n\n[limits]\n{limits}\n')
    return path


def start(server: Server, manifest: Path) -> str:
    with server.client() as c:
        return c.start(manifest)["id"]


def events(server: Server, actor: str, types: list[str] | None = None) -> list[dict[str, Any]]:
    with server.client(timeout=60) as c:
        evs = c.events(actor, types=types)
    return [{"type": e.type, "body": readable(decode_data(e.data))} for e in evs]


def bodies(server: Server, actor: str, type_: str) -> list[dict[str, Any]]:
    return [e["body"] for e in events(server, actor, [type_])]


def numbers_taken(server: Server, actor: str) -> list[int]:
    """The numbers of the ``O`` messages the receiver ran handle-send for, in the order it did."""
    with server.client(timeout=60) as c:
        calls = [decode_data(e.data) for e in c.events(actor, types=["wasm"])]
    return [struct.unpack("<I", b["params"][0][1:5])[0] for b in calls
            if b["event"] == "call" and b["function"].endswith("handle-send")]


def pid_of(server: Server, actor: str) -> int:
    with server.client() as c:
        return int(c.inspect(actor)["pid"])


def test_five_thousand_sends_in_a_loop_all_arrive_in_order(server, tmp_path):
    receiver = start(server, probe(tmp_path, "receiver", "mailbox = 10"))
    sender = start(server, probe(tmp_path, "sender", SENDER))
    with server.client(timeout=180) as c:
        c.request(sender, f"O5000 {receiver}".encode())
    assert numbers_taken(server, receiver) == list(range(5000))
    sent = bodies(server, sender, SEND)
    assert len(sent) == 5000 and all(b["output"] == {"ok": None} for b in sent), sent[:3]
    assert not bodies(server, sender, "limit/refused")
    assert bodies(server, receiver, "limit/mailbox"), "the mailbox never filled: nothing was shown"


@pytest.mark.timeout(900)       # builds the Python guest the first time; the server compiles 18 MB
def test_five_thousand_sends_from_a_python_actor_all_arrive_in_order(server, counter_py_stub, tmp_path):
    """The same loop written in Python (componentize-py), where sends block inside CPython."""
    receiver = start(server, probe(tmp_path, "receiver", "mailbox = 10"))
    precompiled(server.home, counter_py_stub)
    sender = start(server, py_manifest(tmp_path, counter_py_stub, limits=SENDER))
    with server.client(timeout=180) as c:
        assert c.request(sender, f"O5000 {receiver}".encode()) == b""     # the probe's echo of "e"
    assert numbers_taken(server, receiver) == list(range(5000))
    sent = bodies(server, sender, SEND)
    assert len(sent) == 5000 and all(b["output"] == {"ok": None} for b in sent), sent[:3]
    assert not bodies(server, sender, "limit/refused")
    assert bodies(server, receiver, "limit/mailbox"), "the mailbox never filled: nothing was shown"


def test_a_receiver_that_stops_reading_makes_its_sender_wait_not_fail(server, tmp_path):
    """The receiver's worker is stopped (SIGSTOP) while a burst is sent to it: ZeroMQ's queues
    fill, then the sender waits for room (recorded), and once the receiver runs again every
    message arrives, in order."""
    receiver = start(server, probe(tmp_path, "receiver", "mailbox = 5"))
    sender = start(server, probe(tmp_path, "sender", SENDER))
    worker = psutil.Process(pid_of(server, receiver))
    worker.suspend()
    try:
        # ZeroMQ's queues and the socket's buffers take under 2,000 before the sender has to
        # wait (3,000 were enough to see it): 8,000 leave a wide margin
        t, result = request_in_thread(server, sender, f"O8000 {receiver}".encode())
        waiting = wait_for(lambda: bodies(server, sender, "limit/waiting"), timeout=60,
                           what="the sender to wait for room")
        assert waiting[0]["to"] == receiver and waiting[0]["queued"] > 0, waiting
    finally:
        worker.resume()
    t.join(180)
    assert not t.is_alive() and "error" not in result and "reply" in result, result
    assert numbers_taken(server, receiver) == list(range(8000))
    sent = bodies(server, sender, SEND)
    assert len(sent) == 8000 and all(b["output"] == {"ok": None} for b in sent)
    assert not bodies(server, sender, "limit/refused")


def test_a_hung_receiver_fails_the_send_at_the_senders_deadline(server, tmp_path):
    """Room that never comes: the send fails when the sender's call time is up, and the
    refusal is in the sender's chain; nothing is dropped without a record."""
    receiver = start(server, probe(tmp_path, "receiver", "mailbox = 5"))
    sender = start(server, probe(tmp_path, "sender", 'call_timeout = "10s"'))
    worker = psutil.Process(pid_of(server, receiver))
    worker.suspend()
    try:
        t, result = request_in_thread(server, sender, f"O50000 {receiver}".encode())
        t.join(120)
        assert not t.is_alive() and "error" in result, result     # the call ran out of time: the sender failed
        refused = wait_for(lambda: bodies(server, sender, "limit/refused"), timeout=30,
                           what="the refusal in the sender's chain")
        assert refused[0]["to"] == receiver and "is not taking messages" in refused[0]["error"], refused
        failed = [b for b in bodies(server, sender, SEND) if "err" in b["output"]]
        assert failed and "is not taking messages" in failed[0]["output"]["err"], failed[:1]
    finally:
        worker.resume()


def test_messages_a_killed_receiver_never_took_are_counted_to_the_sender(server, tmp_path):
    """A receiver SIGKILLed in a burst dies with thousands of messages in ZeroMQ's queues. Each
    message the sender was told it sent is either in the receiver's chain (it took it) or
    counted in the sender's chain as not delivered: the receiver acknowledges what it took, so
    the sender knows what died with it."""
    # held to ~200 messages a second (two events each), so the burst is still on when it is killed
    receiver = start(server, probe(tmp_path, "receiver", "mailbox = 5\nevents_per_second = 400"))
    sender = start(server, probe(tmp_path, "sender", SENDER))
    worker = psutil.Process(pid_of(server, receiver))
    t, _ = request_in_thread(server, sender, f"O10000 {receiver}".encode())
    try:
        wait_for(lambda: len(numbers_taken(server, receiver)) >= 100, timeout=120,
                 what="the receiver to take some of the burst")
    finally:
        worker.kill()
    t.join(180)
    assert not t.is_alive(), "the sender's call did not end"
    gone = wait_for(lambda: [b for b in bodies(server, sender, "limit/refused") if "before it took" in b["error"]],
                    timeout=60, what="the sender to record what the killed receiver did not take")
    assert gone[0]["to"] == receiver, gone
    lost = sum(b.get("messages", 0) for b in bodies(server, sender, "limit/refused"))
    sent = sum(1 for b in bodies(server, sender, SEND) if b["output"] == {"ok": None})
    taken = len(numbers_taken(server, receiver))
    assert taken < sent, "the receiver took the whole burst before it was killed: nothing was at stake"
    assert taken + lost >= sent, f"{sent} sent, {taken} taken, {lost} counted as not delivered: " \
                                 f"{sent - taken - lost} lost without a record"
    # a send waiting for room when the receiver went fails: it returned ok and its message went
    # nowhere, uncounted (the count above hid it whenever an acknowledgement was lost in flight)
    trail = events(server, sender, [SEND, "limit/refused"])
    went = next(i for i, e in enumerate(trail) if e["type"] == "limit/refused")
    late = [e for e in trail[went:] if e["type"] == SEND and e["body"]["output"] == {"ok": None}]
    assert not late, f"{len(late)} sends returned ok after the receiver was gone: {late[:2]}"


def test_a_receiver_that_took_every_message_and_stopped_leaves_nothing_counted_lost(server, tmp_path):
    """The other side of the count above: what the receiver took it acknowledged, so its stop
    makes the sender record nothing as not delivered."""
    receiver = start(server, probe(tmp_path, "receiver", "mailbox = 10"))
    sender = start(server, probe(tmp_path, "sender", SENDER))
    with server.client(timeout=180) as c:
        c.request(sender, f"O2000 {receiver}".encode())     # its closing request follows every send
        c.stop(receiver)
        assert c.request(sender, b"eafter") == b"after"       # the sender has read the server's notice
    assert len(numbers_taken(server, receiver)) == 2000
    assert not bodies(server, sender, "limit/refused")


def test_a_request_to_a_hung_peer_fails_in_time_for_the_caller_to_answer(server, tmp_path):
    """A peer that never answers costs its caller an Err a little before the caller's own time
    limit, not its life: the caller answers with that error and goes on (the probe's ``q``
    replies ``error: <err>``)."""
    callee = start(server, probe(tmp_path, "callee"))
    # 8 s: its waits end 0.8 s before the limit, time enough to answer on a loaded machine
    caller = start(server, probe(tmp_path, "caller", 'call_timeout = "8s"'))
    worker = psutil.Process(pid_of(server, callee))
    worker.suspend()
    try:
        with server.client(timeout=60) as c:
            reply = c.request(caller, f"q{callee}".encode())
            assert reply.startswith(f"error: no reply from {callee} before this call's time limit".encode()), reply
            info = c.inspect(caller)
            assert (info["status"], info["restarts"], info["last_error"]) == ("running", 0, None), info
    finally:
        worker.resume()



def sends_begun(server: Server, actor: str) -> list[bytes]:
    """The messages the actor began handle-send for (a call's event is shipped as it begins)."""
    with server.client(timeout=60) as c:
        calls = [decode_data(e.data) for e in c.events(actor, types=["wasm"])]
    return [b["params"][0] for b in calls if b["event"] == "call" and b["function"].endswith("handle-send")]


def answers(c: Client, into: dict[str, str], wait: float = 0) -> None:
    """Reads the answers waiting on ``c``'s socket (for ``wait`` seconds at most): id -> kind."""
    while c.sock.poll(wait * 1000):
        header, _ = protocol.decode(c.sock.recv_multipart())
        into[header["re"]] = header["k"]
        wait = 0


def test_a_clients_message_that_dies_in_a_killed_receivers_mailbox_is_an_error_to_the_client(server, tmp_path):
    """A client's one-way message is answered once its call has run and is in the chain, not
    when the worker lets it into its mailbox: one that dies there with its worker is an error
    to the client, never an ok for a message nobody ran."""
    receiver = start(server, probe(tmp_path, "receiver", 'call_timeout = "300s"'))
    worker = psutil.Process(pid_of(server, receiver))
    first, r1 = send_in_thread(server, receiver, b"w6000")          # seconds of work
    got: dict[str, str] = {}
    with server.client(timeout=180) as c:
        try:
            wait_for(lambda: b"w6000" in sends_begun(server, receiver), timeout=60, what="the first message to run")
            # both wait in the worker's queue while the first runs, and are let in together after
            # it; sent on one connection without waiting, so they reach the actor in this order
            for rid, message in (("second", b"l"), ("third", b"elost")):      # l: runs until killed
                c.sock.send_multipart(protocol.encode({"k": "send", "id": rid, "actor": receiver}, message))
            wait_for(lambda: b"l" in sends_begun(server, receiver), timeout=120, what="the second message to run")
            answers(c, got)
            assert "third" not in got, "the third message was answered before it ran"
        finally:
            worker.kill()
        wait_for(lambda: answers(c, got, wait=1) or len(got) == 2, timeout=120, what="both answers")
    first.join(180)
    assert r1 == {"ok": True}
    assert got == {"second": "error", "third": "error"}
    assert b"elost" not in sends_begun(server, receiver)


def test_a_clients_message_that_fails_the_actor_is_an_error_to_the_client(server, tmp_path):
    """The answer to a client's one-way message says it ran: one whose call traps (the actor
    fails) is an error naming how the actor ended, as a request's would be."""
    actor = start(server, probe(tmp_path, "trapper"))
    with server.client(timeout=60) as c:
        c.send(actor, b"eok")                            # one that runs: answered
        with pytest.raises(TheaterError, match="trap"):
            c.send(actor, b"t")

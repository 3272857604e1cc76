"""supervisor/gate.py against a real registry: control messages are attributed by the sender's
pid (as the kernel reports it), never by the routing id or the pid a sender claims."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from supervisor import gate as gate_module
from supervisor.gate import Gate
from supervisor.registry import ActorRecord, ChildSpec, Registry
from theater.manifest import Limits, parse

MANIFEST = 'name = "a"\nversion = "0.1.0"\ncomponent = "a.wasm"\n'


class Frame:
    """What the gate reads of a zmq.Frame: its bytes (and, patched below, its sender's pid)."""

    def __init__(self, data: bytes, pid: int) -> None:
        self.bytes = data
        self.pid = pid


class Server:
    """What the gate talks to: the registry, the chain (told), workers (answered), the inbox (delivered)."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.told: list[dict[str, Any]] = []
        self.answered: list[tuple[str, dict[str, Any]]] = []
        self.delivered: list[tuple[ActorRecord, dict[str, Any], list[bytes]]] = []

    def tell_chain(self, header: dict[str, Any]) -> None:
        self.told.append(header)

    def to_worker(self, actor_id: str, header: dict[str, Any]) -> None:
        self.answered.append((actor_id, header))


@pytest.fixture
def setup(monkeypatch):
    monkeypatch.setattr(gate_module.peercred, "pid", lambda frame: frame.pid)
    server = Server()
    rec = ActorRecord(ChildSpec("actor-1", parse(MANIFEST), MANIFEST, "/", "sha", None, None, Limits()))
    server.registry.add(rec)
    gate = Gate(server.registry, server.tell_chain, server.to_worker)
    gate.deliver = lambda *m: server.delivered.append(m)
    return server, gate, rec


def msg(ident: bytes, sender: int, **header: Any) -> list[Frame]:
    return [Frame(ident, sender), Frame(orjson.dumps(header), sender)]


def hello(ident: bytes, sender: int, claimed: int) -> list[Frame]:
    return msg(ident, sender, k="hello", id="h", actor="actor-1", pid=claimed, endpoint="ipc:///x")


def test_a_hello_before_the_spawn_report_waits_for_it(setup):
    server, gate, rec = setup
    assert gate.admit(hello(b"w1", 100, 100)) is None             # waits
    server.registry.set_pid(rec, 100)                              # the fork server's report
    assert len(server.delivered) == 1 and server.delivered[0][0] is rec and rec.run.ident == b"w1"
    # with the rates the chain holds the worker to
    assert server.told == [{"k": "bind", "actor": "actor-1", "pid": 100, "events_per_second": 10_000,
                            "event_bytes_per_second": 16 << 20}]
    assert gate.admit(msg(b"w1", 100, k="ready", actor="actor-1")) is not None


def test_a_rogue_hello_is_refused_however_it_comes(setup):
    server, gate, rec = setup
    assert gate.admit(hello(b"r1", 666, 100)) is None              # claims the worker's pid: refused
    assert gate.admit(hello(b"r2", 666, 666)) is None              # early, its own pid: waits ...
    assert gate.admit(hello(b"w1", 100, 100)) is None
    server.registry.set_pid(rec, 100)                              # ... and loses to the real worker
    assert len(server.delivered) == 1 and rec.run.ident == b"w1"
    assert gate.admit(hello(b"r3", 666, 666)) is None              # too late: the actor has its worker
    assert rec.run.ident == b"w1"


def test_a_bound_connection_takes_messages_from_its_worker_only(setup):
    server, gate, rec = setup
    server.registry.set_pid(rec, 100)
    assert gate.admit(hello(b"w1", 100, 100)) is not None
    assert gate.admit(msg(b"w1", 666, k="ready", actor="actor-1")) is None     # a handed-over connection
    assert gate.admit(msg(b"other", 100, k="ready", actor="actor-1")) is None  # no hello on this one
    server.registry.set_pid(rec, None)                                         # it exited
    assert server.told[-1] == {"k": "unbind", "actor": "actor-1"}


def test_after_the_spawn_report_only_the_reported_pid_says_hello(setup):
    server, gate, rec = setup
    server.registry.set_pid(rec, 100)
    assert not server.delivered
    assert gate.admit(hello(b"r1", 666, 666)) is None and rec.run.ident is None
    assert gate.admit(hello(b"w1", 100, 100)) is not None and rec.run.ident == b"w1"


def test_a_workers_malformed_request_is_answered_if_its_id_can_be_read(setup):
    """A malformed request on an actor's worker's connection gets a protocol error at once (it was
    dropped, its call left to wait out its time limit); one with no id to answer, or not on a worker's
    connection, is only dropped (and logged, one line a second at most)."""
    server, gate, rec = setup
    server.registry.set_pid(rec, 100)
    no_id = msg(b"w1", 100, k="hello", actor="actor-1", pid=100, endpoint="e")
    assert gate.admit(no_id) is None                # a hello is answered: without an id, its answer was a KeyError
    assert gate.admit(hello(b"w1", 100, 100)) is not None
    assert gate.admit(msg(b"w1", 100, k="resolve", id="r1", actor=5)) is None
    assert gate.admit(msg(b"w1", 100, k="spawn", id="r2")) is None
    assert gate.admit(msg(b"w1", 100, k="resolve", id=7, actor="actor-1")) is None
    assert gate.admit(msg(b"w1", 100, k="watch_peer", actor="actor-1", incarnation="x")) is None
    assert gate.admit(msg(b"w1", 666, k="resolve", id="r3", actor=5)) is None       # not its worker
    assert gate.admit(msg(b"w2", 100, k="resolve", id="r4", actor=5)) is None       # no hello on it
    assert [(to, h["k"], h["re"], h["code"]) for to, h in server.answered] == [
        ("actor-1", "error", "r1", "protocol"), ("actor-1", "error", "r2", "protocol")]
    assert server.answered[0][1]["error"] == "resolve: field 'actor' missing or not a string"

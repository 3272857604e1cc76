"""The server's gate on the control plane (supervisor.gate): which actor a worker's message is
from. Here without processes: the pid the kernel would report for each connection is given."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from supervisor import gate as gate_module
from supervisor.gate import Gate
from supervisor.registry import Registry, Status

WORKER = 4242


class Frame(SimpleNamespace):
    bytes: bytes


def message(ident: bytes, **header: Any) -> list[Any]:
    return [Frame(bytes=ident), Frame(bytes=orjson.dumps(header))]


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    """A gate whose registry holds one actor starting, its worker spawned as pid WORKER."""
    monkeypatch.setattr(gate_module.peercred, "pid", lambda _frame: WORKER)
    registry = Registry()
    registry.actors["a"] = SimpleNamespace(actor_id="a", run=SimpleNamespace(ident=None), status=Status.STARTING,
                                           pid=WORKER)
    return Gate(registry, tell_chain=lambda _header: None, to_worker=lambda _actor, _header: None)


def test_a_second_hello_on_a_workers_connection_is_refused(gate):
    """The first hello's pid is checked against the spawn report; a second one, let through, would
    have its pid taken as the actor's worker (given the actor's cgroup limits, bound to its chain)."""
    hello = {"k": "hello", "actor": "a", "endpoint": "ipc:///w.sock"}
    first = gate.admit(message(b"w1", **hello, id="h1", pid=WORKER))
    assert first is not None and first[1]["k"] == "hello"
    assert gate.admit(message(b"w1", **hello, id="h2", pid=1)) is None
    beat = gate.admit(message(b"w1", k="heartbeat"))     # the connection itself still speaks for the actor
    assert beat is not None and beat[0].actor_id == "a"

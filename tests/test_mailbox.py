"""The mailbox of an ending actor: what arrives once it has refused what waited is refused too,
never kept where no one will read it (the worker still serves its sockets while the chain settles)."""

from __future__ import annotations

from typing import Any

from worker.mailbox import Incoming, Mailbox


def test_what_arrives_after_the_drop_is_refused_at_once():
    told: list[tuple[Any, dict[str, Any]]] = []
    box = Mailbox("a1", 10, lambda route, header, *_, **__: told.append((route, header)), lambda *_: None)
    box.closing = True
    box.admit(Incoming("send", {}, b"x", ("peer", b"b1")), True)
    box.admit(Incoming("send", {}, b"y", ("peer", b"b1")), True)
    box.drop("actor a1 stopped")
    assert told == [(("peer", b"b1"), {"k": "refused", "error": "actor a1 stopped", "count": 2})]
    box.admit(Incoming("request", {"rid": "r9"}, b"z", ("peer", b"b2")), True)
    assert told[-1] == (("peer", b"b2"), {"k": "reply", "rid": "r9", "ok": False, "code": "refused",
                                          "error": "actor a1 stopped"})
    assert not box.items


def test_a_full_mailbox_stops_reading_before_it_records_that_it_is_full():
    """Recording may wait (the event rate, a chain that is behind), serving the sockets meanwhile:
    the inbox must be paused first, or every peer's message is let in past the limit while it waits."""
    paused: list[bool] = []
    at_record: list[list[bool]] = []
    box = Mailbox("a", 2, reply=lambda *_a, **_k: None, record=lambda *_: at_record.append(list(paused)),
                  pause=paused.append)
    for i in range(2):
        box.admit(Incoming("send", {}, b"%d" % i, ("peer", b"p")), counted=True)
    assert at_record == [[True]]

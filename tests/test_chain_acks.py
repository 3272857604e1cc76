"""chain.acks: which acknowledgements the chain owes, and when each is due (the timing given)."""

from __future__ import annotations

from chain.acks import ACK_DELAY, ACK_EVERY, Acks

A, B, C = (b"w1", "a"), (b"w2", "b"), (b"w3", "c")


def test_lazy_acknowledgements_come_due_oldest_first_and_keep_their_place():
    acks = Acks()
    acks.stage(A, 3, 4)
    acks.stored(now=0.0)
    acks.stage(B, 7, 1)
    acks.stage(A, 5, 2)                     # A grows: it keeps its place, and its age
    acks.stored(now=0.02)
    assert acks.next_due() == ACK_DELAY
    assert acks.due(now=ACK_DELAY - 0.001) == []
    assert acks.due(now=ACK_DELAY) == [(A, 5)]          # B, stored later, is not due yet
    assert acks.next_due() == 0.02 + ACK_DELAY
    assert acks.due(now=1.0) == [(B, 7)]
    assert acks.next_due() is None and acks.due(now=2.0) == []


def test_waited_on_and_far_behind_are_due_at_once():
    acks = Acks()
    acks.stage(A, 1, 1)
    acks.stage(B, 1, ACK_EVERY)
    acks.stage(C, 1, 1)
    acks.waited.add(C)
    acks.stored(now=0.0)
    assert sorted(acks.due(now=0.0)) == [(B, 1), (C, 1)]
    acks.stage(B, 2, 1)
    acks.stage(C, 2, 1)
    acks.stored(now=0.0)
    assert acks.due(now=0.0) == []          # waited and full are taken once, not for what follows
    assert acks.due(now=0.0, everything=True) == [(A, 1), (B, 2), (C, 2)]


def test_a_group_refused_owes_nothing_and_forgets_who_waited():
    acks = Acks()
    acks.stage(A, 2, 2)
    acks.waited.add(A)
    assert acks.refused() == [A]
    assert not acks.waited
    acks.stored(now=0.0)
    assert acks.due(now=10.0, everything=True) == []

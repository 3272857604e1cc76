"""`theater events --follow`'s liveness check, with a fake client."""

from __future__ import annotations

from collections import deque

import pytest

from theater.cli.chains import _check_server
from theater.errors import Unreachable


class FakeClient:
    def __init__(self, pushes_meanwhile: int) -> None:
        self.pushes: deque = deque()
        self.meanwhile = pushes_meanwhile

    def ping(self) -> dict:
        for i in range(self.meanwhile):      # what `Client.call` keeps while it waits for its answer
            self.pushes.append(({"k": "event", "sub": "s1"}, [b"%d" % i]))
        raise Unreachable("the theater server is not responding")


def test_a_ping_answer_dropped_behind_a_full_queue_of_pushes_is_not_a_dead_server():
    """A follower continued after SIGSTOP pings a server whose answer is dropped (its queue of
    pushes is full): it used to exit "server not responding" while the server pushed on."""
    c = FakeClient(pushes_meanwhile=3)
    _check_server(c)                         # type: ignore[arg-type]
    assert len(c.pushes) == 3                # kept for the follower to read


def test_a_silent_server_is_unreachable():
    with pytest.raises(Unreachable):
        _check_server(FakeClient(pushes_meanwhile=0))      # type: ignore[arg-type]

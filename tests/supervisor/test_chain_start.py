"""The server's wait for the chain process at start: one that works on (an upgrade indexing a
large chains.db) is waited for, one that is stuck is not."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import psutil
import pytest

from supervisor import server as server_mod
from supervisor.launch import Child
from theater.errors import TheaterError
from theater.paths import Home

from ..conftest import wait_for


class SlowChain:
    """A chain socket that answers after ``polls`` polls of 0.1 s."""

    def __init__(self, polls: int) -> None:
        self.polls = polls

    def send_multipart(self, frames: list[bytes]) -> None:
        pass

    def poll(self, _ms: int) -> bool:
        self.polls -= 1
        return self.polls <= 0

    def recv_multipart(self) -> list[bytes]:
        return [b'{"k":"ok","re":"boot","public_key":"k"}']


def waiting(polls: int, working: bool, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    monkeypatch.setattr(server_mod, "CHAIN_START_TIMEOUT", 0.2)
    monkeypatch.setattr(server_mod.time, "monotonic", iter(range(0, 10**6)).__next__)   # a second a look
    extended: list[float] = []
    return SimpleNamespace(chain=SlowChain(polls), public_key="", extended=extended,
                           chain_proc=SimpleNamespace(poll=lambda: None, working=lambda: working, last_line=str),
                           health=SimpleNamespace(notifier=SimpleNamespace(extend=lambda s, _w: extended.append(s))))


def test_a_chain_process_that_works_on_is_waited_for_and_systemd_told(monkeypatch):
    fake = waiting(polls=20, working=True, monkeypatch=monkeypatch)
    server_mod.Server._wait_for_chain(fake)
    assert fake.public_key == "k" and fake.extended, fake.extended


def test_a_chain_process_that_does_nothing_fails_the_start(monkeypatch):
    fake = waiting(polls=20, working=False, monkeypatch=monkeypatch)
    with pytest.raises(TheaterError, match="did not start within"):
        server_mod.Server._wait_for_chain(fake)
    assert not fake.extended


def test_work_is_told_from_sleep(tmp_path):
    """``Child.working``: CPU or disk used since it was last asked (the first look only reads)."""
    busy, asleep = Child("busy", Home(tmp_path / "h"), []), Child("asleep", Home(tmp_path / "h"), [])
    busy.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    asleep.proc = subprocess.Popen(["sleep", "600"])
    try:
        wait_for(lambda: psutil.Process(asleep.proc.pid).status() == psutil.STATUS_SLEEPING, what="the sleeper")
        assert asleep.working() is False and busy.working() is False
        wait_for(busy.working, timeout=30, what="the busy one to be seen working")
        assert asleep.working() is False
    finally:
        for child in (busy, asleep):
            child.proc.kill()
            child.proc.wait()

"""A spare's rehearsal (worker.rehearsal): an actor's start, played on a tiny actor before a spare
is needed, by a fork server that compiled that actor without a thread pool."""

from __future__ import annotations

import logging
import os
import signal

import psutil
import pytest

from worker import chainlink, component, crossing, rehearsal

from .conftest import EXAMPLES, wait_for


@pytest.fixture(scope="module")
def stage() -> rehearsal.Stage:
    return rehearsal.prepare(component.make_engine(False))


def test_a_rehearsal_plays_a_whole_start_and_keeps_nothing(stage, monkeypatch):
    shipped: list[list[str]] = []
    real = chainlink.append_message

    def watched(actor_id: str, batch: chainlink.Batch, sync: bool = False) -> list[bytes]:
        shipped.append([meta["type"] for meta, _data in batch])
        return real(actor_id, batch, sync)
    monkeypatch.setattr(chainlink, "append_message", watched)
    assert stage.shape.adapted          # it warms what most actors run: the byte adapter's paths
    before = dict(crossing._HOST_FUNCS)
    rehearsal.rehearse(stage)
    rehearsal.rehearse(stage)     # and again: nothing of the first was left to collide with
    # linked, instantiated, init called (and it called its host's log), the events encoded
    start = ["lifecycle/start", "wasm", "theater:simple/runtime/log", "wasm"]
    assert shipped == [start, start]
    assert dict(crossing._HOST_FUNCS) == before     # its host functions went with its linker and store


def test_a_failed_rehearsal_is_logged_and_raises_nothing(stage, caplog):
    broken = rehearsal.Stage(stage.engine, stage.component, component.Shape({}, {}, {}))   # it imports nothing
    with caplog.at_level(logging.ERROR, logger="theater.zygote"):
        rehearsal.rehearse(broken)
    assert f"worker {os.getpid()}: its rehearsal failed" in caplog.text


def _spares(server) -> list[psutil.Process]:
    zygote = server.fork_server()
    wait_for(lambda: len(zygote.children()) >= 2, timeout=60, what="the fork server's spares")
    return zygote.children()


def test_the_fork_server_compiles_its_rehearsal_actor_without_a_thread_pool(server):
    """Children of a process in which wasmtime's compile thread pool ran deadlock when they compile
    or load: the fork server compiles the rehearsal's actor on its one thread, and keeps one."""
    zygote = server.fork_server()
    spares = _spares(server)
    assert zygote.num_threads() == 1
    if "--sandbox" in zygote.cmdline():
        # a sandboxed spare may start a thread only once confined (Landlock binds only the
        # threads started after it): its rehearsal starts none
        wait_for(lambda: all(p.num_threads() == 1 for p in spares), timeout=30, what="spares of one thread")
    with server.client() as c:      # and its rehearsed spares become actors
        for _ in range(3):
            actor = c.start(EXAMPLES / "counter" / "manifest.toml")["id"]
            assert c.request(actor, b"x") == b"1"
            assert [e.type for e in c.events(actor)][:1] == ["lifecycle/start"]
    log = server.log_tail(400)
    assert "rehearsal" not in log, log      # prepared, and played without failing


def test_spares_that_crash_before_they_are_needed_stop_rehearsing(server):
    """A crash in native code (no exception to catch) would recur in every spare's rehearsal."""
    os.kill(_spares(server)[0].pid, signal.SIGABRT)   # (wasmtime handles SIGSEGV: traps)
    wait_for(lambda: "spares no longer rehearse" in server.log_tail(400), timeout=30, what="the fork server's note")
    with server.client() as c:
        for _ in range(3):
            assert c.request(c.start(EXAMPLES / "counter" / "manifest.toml")["id"], b"x") == b"1"

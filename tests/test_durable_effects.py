"""Nothing an actor does is seen before the chain can no longer lose it (issue 16, finding 3
and 14d; issue 11's round trip).

A reply, a one-way message or a request leaves a worker only once the events that led to
it are out of its reach: written to the chain process's stream (on its queue in the kernel,
whatever becomes of the worker), or with ``durability = "machine"``, acknowledged as
fsynced. So a worker killed while the chain cannot store anything leaves no effect its
restarted incarnation (resuming from the last stored state) could repeat: no reply value is
ever received twice, and every one received is in the chain. And the events a worker still
holds when the chain process dies go to the new one as soon as the server says it runs, not
on the next periodic resend.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from theater.errors import TheaterError, Timeout
from theater.paths import Home

from .conftest import (
    ACTORS,
    EXAMPLES,
    ROOT,
    Server,
    cli_events,
    cli_start,
    configured_server,
    pid_alive,
    send_in_thread,
    wait_for,
)

COUNTER = EXAMPLES / "counter" / "manifest.toml"
HANDLE_REQUEST = "theater:simple/message-server-client.handle-request"


def inspect(server: Server, actor: str) -> dict[str, Any]:
    with server.client() as c:
        return c.inspect(actor)


def state(server: Server, actor: str) -> bytes | None:
    with server.client() as c:
        return c.state(actor)


@contextlib.contextmanager
def chain_stopped(server: Server) -> Iterator[None]:
    """The chain process stopped (SIGSTOP) for the block, and going on (SIGCONT) after it."""
    chain = psutil.Process(server.chain_pid())
    chain.suspend()
    try:
        yield
    finally:
        chain.resume()


@pytest.fixture
def machine(home: Home) -> Iterator[Server]:
    """A server whose chain fsyncs every commit (``durability = "machine"``): an effect waits
    for the acknowledgement of its events, not only for their writing."""
    with configured_server(home, '[chain]\ndurability = "machine"\n') as s:
        yield s


def calls(server: Server, actor: str) -> int:
    """The calls the worker has run (init included), as its last heartbeat said (every 2 s):
    what shows progress while the chain is stopped, when the state is not shown."""
    return inspect(server, actor)["stats"].get("calls", 0)


class Driver:
    """Requests "+1" to a counter from a thread, one after another, keeping every reply value;
    errors (the actor killed, restarting) are counted and the next request goes."""

    def __init__(self, server: Server, actor: str) -> None:
        self.server, self.actor = server, actor
        self.values: list[int] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.server.client(timeout=60) as c:
            while not self.stopping.is_set():
                try:
                    self.values.append(int(c.request(self.actor, b"+1")))
                except TheaterError as e:
                    self.errors.append(e.message)
                    self.stopping.wait(0.02)        # pacing while the actor restarts, not synchronisation

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(90)
        assert not self.thread.is_alive(), "the driver is stuck"


def replies_in_chain(server: Server, actor: str) -> list[int]:
    out = []
    for e in cli_events(server, actor):
        b = e["body"]
        if e["type"] == "wasm" and b.get("event") == "result" and b.get("function") == HANDLE_REQUEST:
            out.append(int(b["result"][0]["utf8"]))
    return out


def test_a_worker_killed_while_the_chain_is_stopped_repeats_no_reply(server):
    """The issue's sequence: SIGSTOP the chain, drive requests, SIGKILL the worker, SIGCONT the
    chain, drive more. Before the fix the worker kept answering while nothing was stored, and
    the restarted actor answered the same values again."""
    actor = cli_start(server, COUNTER)
    chain = server.chain_pid()
    assert chain is not None
    driver = Driver(server, actor)
    try:
        wait_for(lambda: len(driver.values) >= 20, timeout=30, what="the counter to answer")
        pid = inspect(server, actor)["pid"]
        os_chain = psutil.Process(chain)
        os_chain.suspend()                                   # SIGSTOP
        try:
            at_stop = len(driver.values)
            # an observation window, not synchronisation: what a worker answers while nothing can
            # be stored (before the fix: thousands of replies in this time)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and len(driver.values) < at_stop + 2000:
                time.sleep(0.05)
            psutil.Process(pid).kill()
            wait_for(lambda: not pid_alive(pid), what="the worker to die")
        finally:
            os_chain.resume()                                # SIGCONT
        def restarted() -> bool:
            info = inspect(server, actor)
            return info["pid"] not in (None, pid) and info["status"] == "running"
        wait_for(restarted, timeout=30, what="the counter to be restarted")
        restarted_at = len(driver.values)
        wait_for(lambda: len(driver.values) >= restarted_at + 50, timeout=60, what="the restarted counter to answer")
    finally:
        driver.stop()
    values = driver.values
    twice = sorted(v for v in set(values) if values.count(v) > 1)
    assert not twice, f"{len(twice)} reply values received twice, e.g. {twice[:10]}"
    stored = set(replies_in_chain(server, actor))
    missing = [v for v in values if v not in stored]
    assert not missing, f"{len(missing)} replies received that the chain does not hold, e.g. {missing[:10]}"
    assert driver.errors, "the killed worker's request should have failed"


def probe_manifest(folder: Path, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{ACTORS / "probe.wat"}"\n\n'
                    '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n')
    return path


def test_one_way_messages_wait_for_a_machine_durable_chain(machine, tmp_path):
    """A probe sends five messages to a counter (then one request): while the chain is stopped
    the counter receives none of them; once it runs again, all six arrive, in one batch."""
    server = machine
    counter = cli_start(server, COUNTER)
    probe = cli_start(server, probe_manifest(tmp_path, "sender"))
    with server.client() as c:
        assert c.request(counter, b"+1") == b"1"
    with chain_stopped(server):
        # one-way to the probe: answered once the chain holds its call
        sent, result = send_in_thread(server, probe, f"M5 {counter}".encode())
        # an observation window: before the fix the five arrived within milliseconds
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert state(server, counter) == b"1", "a message left the sender before the chain stored its events"
            time.sleep(0.1)
    wait_for(lambda: state(server, counter) == b"7", timeout=30, what="the six messages to arrive")
    sent.join(180)
    assert result == {"ok": True}
    sends = [e for e in cli_events(server, probe) if e["type"] == "theater:simple/message-server-host/send"]
    assert len(sends) == 5


def test_messages_whose_events_were_written_survive_their_sender_killed_with_the_chain_stopped(server, tmp_path):
    """With the chain stopped, a probe's five one-way messages still reach the counter: their
    events are written to the chain's stream. The probe's worker is then killed before the
    chain has read a byte of them: once the chain runs again, it holds all five sends, and
    the restarted probe goes on from them (an effect out before its events were written
    would leave the chain without them)."""
    counter = cli_start(server, COUNTER)
    probe = cli_start(server, probe_manifest(tmp_path, "sender"))
    with server.client() as c:
        assert c.request(counter, b"+1") == b"1"
        pid = c.inspect(probe)["pid"]
    with chain_stopped(server):
        with server.client() as c:
            # one-way to the probe: answered once its call's events are written (to the stream,
            # which takes them while the chain process is stopped)
            c.send(probe, f"M5 {counter}".encode())
        wait_for(lambda: state(server, counter) == b"7", timeout=30,
                 what="the five messages and the request to reach the counter while the chain is stopped")
        psutil.Process(pid).kill()
        wait_for(lambda: not pid_alive(pid), what="the probe's worker to die")
    wait_for(lambda: inspect(server, probe)["pid"] not in (None, pid), timeout=30, what="the probe to restart")
    types = [e["type"] for e in cli_events(server, probe)]
    assert types.count("theater:simple/message-server-host/send") == 5, types
    v = server.cli("verify", probe)
    assert v.code == 0, v.text + v.err


def test_a_state_is_shown_only_once_the_chain_holds_the_calls_that_made_it(machine):
    """`theater state` reveals what an actor's calls did, as a reply does: while the chain is
    stopped, a call's new state is not shown; once the chain stores the call, it is. (Shown at
    once, a state could be lost with its worker: tests/test_wasi.py read a state after a start,
    killed the worker, and found the events that made it missing from the chain.)"""
    server = machine
    actor = cli_start(server, COUNTER)
    with server.client() as c:
        assert c.request(actor, b"+1") == b"1"
    with chain_stopped(server):
        # one-way: the call runs; its events, and so the send's answer, wait for the chain
        sent, result = send_in_thread(server, actor, b"+1")
        wait_for(lambda: calls(server, actor) >= 3, timeout=30, what="the worker to run the call (init, request, send)")
        with pytest.raises(Timeout), server.client(timeout=3) as c:
            c.state(actor)
        assert not result, "a one-way message was answered before the chain held its call"
    assert state(server, actor) == b"2"
    sent.join(180)
    assert result == {"ok": True}


def test_held_effects_go_once_the_chain_restarts(machine):
    """Replies held for a stopped chain that is then killed leave once the new chain process
    stores their events: the client waits, it does not lose them."""
    server = machine
    actor = cli_start(server, COUNTER)
    old = server.chain_pid()
    chain = psutil.Process(old)
    chain.suspend()
    got: dict[str, Any] = {}

    def ask() -> None:
        try:
            with server.client(timeout=60) as c:
                got["value"] = c.request(actor, b"+1")
        except TheaterError as e:
            got["error"] = e.message
    t = threading.Thread(target=ask, daemon=True)
    t.start()
    try:
        wait_for(lambda: calls(server, actor) >= 2, what="the counter to handle the request")
        assert t.is_alive() and "value" not in got, got
        chain.kill()
    finally:
        if chain.is_running():
            chain.resume()
    wait_for(lambda: server.chain_pid() not in (None, old), timeout=30, what="a new chain process")
    t.join(60)
    assert got.get("value") == b"1", got
    assert replies_in_chain(server, actor) == [1]


# ---- 14 (d): the resend after a chain restart is immediate ----------------------------------------

def test_unacknowledged_events_go_to_a_new_chain_at_once(server, tmp_path):
    """Events a worker holds when the chain process dies are sent again when the server says a
    new one runs (``chain_restarted``), not when the periodic resend would: the worker's log
    says which path sent them. (A regression to the periodic resend alone passed the whole
    suite: the durability tests allow 60 s.)"""
    counter = cli_start(server, COUNTER)
    old = server.chain_pid()
    chain = psutil.Process(old)
    chain.suspend()
    try:
        with server.client() as c:
            for _ in range(3):
                c.send(counter, b"+1")              # answered once its events are written, not stored
        wait_for(lambda: calls(server, counter) >= 4, what="the sends to be handled")     # init + 3
    finally:
        chain.kill()                                # what it had not stored is lost with it
    wait_for(lambda: server.chain_pid() not in (None, old), timeout=30, what="a new chain process")
    wait_for(lambda: sum(1 for e in cli_events(server, counter) if e["type"] == "wasm"
                         and e["body"].get("event") == "result") >= 4, timeout=30,
             what="the sends' events to reach the new chain")      # init + 3 sends
    log = (server.home.logs / "server.log").read_text()
    assert f"actor {counter}: the chain process restarted: sending" in log, log[-3000:]
    assert f"actor {counter}: no acknowledgement in time" not in log
    v = server.cli("verify", counter)
    assert v.code == 0, v.text + v.err


@pytest.mark.parametrize(("text", "named"), [('durability = "disk"', "durability"),
                                             ('durablity = "machine"', "durablity")])
def test_chain_durability_setting_is_checked(home, text, named):
    """server.toml [chain] durability: "process" or "machine"; anything else (or another key)
    stops the server with one line naming the key and what is allowed."""
    home.ensure()
    (home.root / "server.toml").write_text(f"[chain]\n{text}\n")
    p = subprocess.run([sys.executable, "-m", "supervisor", "--home", str(home.root)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30, cwd=ROOT)
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and len(err.splitlines()) == 1, err
    assert named in err and "server.toml" in err, err
    assert ("process" in err and "machine" in err) or "allowed: durability" in err, err


@pytest.mark.parametrize("durability", ["process", "machine"])
def test_both_durabilities_store_and_acknowledge(home, durability):
    with configured_server(home, f'[chain]\ndurability = "{durability}"\n') as s:
        chain = s.chain_pid()
        assert chain is not None and f"--durability {durability}" in " ".join(psutil.Process(chain).cmdline())
        actor = cli_start(s, COUNTER)
        with s.client() as c:
            assert [c.request(actor, b"+1") for _ in range(3)] == [b"1", b"2", b"3"]
        assert replies_in_chain(s, actor) == [1, 2, 3]


def test_export_right_after_a_reply_holds_what_the_reply_showed(server):
    """`theater export` and `verify` read the store directly; with a server running, its chain
    first stores what workers have written. The reply below leaves while the chain is stopped
    (its events written, not stored): an export started then waits for the chain, and holds
    the call (before: it read the store at once, without it)."""
    actor = cli_start(server, COUNTER)
    with chain_stopped(server):
        with server.client() as c:
            assert c.request(actor, b"+1") == b"1"
        export = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "export", actor],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        wait_for(lambda: bool(psutil.Process(export.pid).net_connections(kind="unix")), timeout=30,
                 what="the export to reach the server")
    out, err = export.communicate(timeout=60)
    assert export.returncode == 0, err
    results = [e for e in map(orjson.loads, out.splitlines()) if e["type"] == "wasm"
               and e["body"].get("event") == "result" and e["body"].get("function") == HANDLE_REQUEST]
    assert [int(e["body"]["result"][0]["utf8"]) for e in results] == [1]


def test_replay_right_after_a_reply_replays_the_call_it_came_from(server):
    """`theater replay ACTOR` reads the store directly too: started while the chain holds a
    call only written, not stored, it waits for the chain and replays that call (before: it
    replayed init alone)."""
    actor = cli_start(server, COUNTER)
    with chain_stopped(server):
        with server.client() as c:
            assert c.request(actor, b"+1") == b"1"
        replay = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "replay", actor,
                                   "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        wait_for(lambda: replay.poll() is not None or bool(psutil.Process(replay.pid).net_connections(kind="unix")),
                 timeout=30, what="the replay to reach the server (or end)")
    out, err = replay.communicate(timeout=120)
    assert replay.returncode == 0, err
    report = orjson.loads(out)
    assert report["ok"] and report["calls"] == 2, report      # init, then the request

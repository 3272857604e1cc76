"""Stops that meet starts: a restart an actor waits for (its backoff, or its own stop first) is
called off by any stop that comes meanwhile; a call cut short by a stop is a stop, not a failure;
a child not ready when its parent stops waiting for it is stopped.

A worker stopped with SIGSTOP cannot answer its SIGTERM, so its stop lasts its whole ``[restart]
shutdown`` timeout (then SIGKILL): the window in which the races below happened every time.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from theater.client import Client
from theater.errors import TheaterError
from theater.events import decode_data

from .conftest import Server, pid_alive, wait_for
from .test_supervision import spawn, wait_note, write_parent, write_probe


def crashing(tmp_path: Path, name: str, backoff: str = "2s") -> Path:
    """A permanent probe restarted ``backoff`` after it fails (its [restart] table is the manifest's last)."""
    path = write_probe(tmp_path, name, type="permanent")
    path.write_text(path.read_text() + f'backoff = {{ min = "{backoff}", max = "{backoff}", jitter = 0 }}\n')
    return path


def workers_of(server: Server, actor: str) -> list[int]:
    """The live worker processes of ``actor`` (a worker names its actor in its title)."""
    found = []
    for p in psutil.Process(server.fork_server().pid).children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and actor in " ".join(p.cmdline()):
                found.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def listed(c: Client) -> dict[str, str]:
    return {a["id"]: a["status"] for a in c.call("list")[0]["actors"]}


def freeze(c: Client, actor: str) -> int:
    """Stops ``actor``'s worker with SIGSTOP: its stop now takes its whole shutdown timeout."""
    pid = c.inspect(actor)["pid"]
    os.kill(pid, signal.SIGSTOP)
    return pid


def wait_restarting(c: Client, actor: str) -> None:
    wait_for(lambda: c.inspect(actor)["status"] == "restarting", timeout=30, what=f"{actor} to wait out its backoff")


def test_a_child_waiting_out_its_backoff_ends_with_its_killed_parent(server, tmp_path):
    """Its restart timer fired while its parent's other children were being stopped, and started
    it again as an orphan: in `list`, in no tree, not stopped with anyone, holding up shutdown."""
    with server.client(timeout=20) as c:
        parent = c.start(write_parent(tmp_path, strategy="one_for_one", intensity=10, period="60s"))["id"]
        slow = spawn(c, parent, write_probe(tmp_path, "slow", shutdown="10s"))
        child = spawn(c, parent, crashing(tmp_path, "child", backoff="4s"))
        freeze(c, slow)
        with pytest.raises(TheaterError):
            c.request(child, b"t")
        wait_restarting(c, child)
        os.kill(c.inspect(parent)["pid"], signal.SIGKILL)        # its children end with it (well within 4 s)
        # the frozen child is killed at its 10 s timeout, long after the 4 s backoff ran out
        wait_for(lambda: slow not in listed(c), timeout=30, what="the frozen child to be stopped and forgotten")
        assert child not in listed(c)
        assert workers_of(server, child) == []


def test_server_shutdown_during_a_restart_backoff_ends(server, tmp_path):
    """The restart timer of an actor in its backoff fired while the server stopped the others, and
    the server waited forever for the actor it had just started again."""
    with server.client(timeout=20) as c:
        slow = c.start(write_probe(tmp_path, "slow", shutdown="6s"))["id"]
        crashed = c.start(crashing(tmp_path, "crashed"))["id"]
        freeze(c, slow)
        with pytest.raises(TheaterError):
            c.request(crashed, b"t")
        wait_restarting(c, crashed)
    pids = {p.pid for p in server.descendants()}
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0                            # the frozen one is killed at 6 s
    assert not [p for p in pids if pid_alive(p)]


def test_a_stop_during_a_restart_wins(server, tmp_path):
    """Both waited for the same exit; the restart then started the actor again and the stop forgot
    it: its new worker was refused by the server, and the restart was never answered."""
    with server.client(timeout=20) as c:
        actor = c.start(write_probe(tmp_path, "p", shutdown="3s"))["id"]
        freeze(c, actor)
    result: dict[str, Any] = {}

    def restart() -> None:
        with server.client(timeout=60) as rc:
            try:
                result["reply"] = rc.call("restart", actor=actor)[0]
            except TheaterError as e:
                result["error"] = e
    t = threading.Thread(target=restart)
    t.start()
    with server.client(timeout=20) as c:
        wait_for(lambda: c.inspect(actor)["status"] == "stopping", timeout=30, what="the restart's stop")
        assert c.stop(actor)["status"] == "stopped"
        t.join(30)
        assert not t.is_alive(), "the restart was never answered"
        assert "stopped before it restarted" in str(result.get("error")), result
        assert actor not in listed(c)
        assert workers_of(server, actor) == []


def test_a_call_cut_short_by_a_stop_is_a_stop(server, tmp_path):
    """A child stopped while it loops is interrupted after the stop's grace: its parent hears an
    external stop (not a child error), and its exit is a shutdown, as for an idle child."""
    with server.client(timeout=20) as c:
        parent = c.start(write_parent(tmp_path))["id"]
        child = spawn(c, parent, write_probe(tmp_path, "kid"))
        assert c.request(parent, f"P{child} l".encode()) == b"ok"    # it loops from now on
        wait_for(lambda: any(decode_data(e.data).get("event") == "call" for e in c.events(child, types=["wasm"])
                             if b"handle-send" in e.data), timeout=30, what="the child's looping call to start")
        assert server.cli("stop", child).code == 0
        assert wait_note(c, parent, child) == f"external:{child}:-;"
        (ex,) = [decode_data(e.data) for e in c.events(child, types=["lifecycle/exit"])]
        assert (ex["kind"], ex["action"]) == ("shutdown", "stopped"), ex


def parent_and_slow_child(c: Client, tmp_path: Path) -> tuple[str, str, Path]:
    """A parent and a probe that never answers, both with 3 s calls; and the manifest of a child
    with the same limit (its init is slow when its state is ``ask-init <the silent probe>``)."""
    manifest = write_parent(tmp_path)
    manifest.write_text(manifest.read_text() + '\n[limits]\ncall_timeout = "3s"\n')
    parent = c.start(manifest)["id"]
    silent = c.start(write_probe(tmp_path, "silent"))["id"]
    slow = write_probe(tmp_path, "slow")
    slow.write_text(slow.read_text() + '\n[limits]\ncall_timeout = "3s"\n')
    return parent, silent, slow


def test_a_child_not_ready_when_its_parent_stops_waiting_is_stopped(server, tmp_path):
    """The parent's spawn gave up at its call's time limit (an Err), yet the child's start went on
    and it ran as the parent's child: each retry added another. The server now stops a child that
    is not ready a little before the parent's call stops waiting for it."""
    with server.client(timeout=20) as c:
        parent, silent, _ = parent_and_slow_child(c, tmp_path)
        # its init waits for a reply that never comes, until its own time limit: the parent's, which
        # began a little earlier; so the child would be ready just after its parent stopped waiting
        reply = c.request(parent, f"Islow.toml ask-init {silent}".encode())
        assert reply.startswith(b"error: "), reply
        wait_for(lambda: not [a for a in c.call("list")[0]["actors"] if a["parent"] == parent], timeout=30,
                 what="the parent to have no child")
        assert c.request(parent, b"L") == b""


def test_an_ordered_restart_goes_on_when_its_first_actor_is_stopped_during_its_start(server, tmp_path):
    """one_for_all restarts its children in order, each once the one before is ready. The first,
    stopped by a client while its init ran, became ready and then stopped: the rest must still
    start (not wait in "restarting" for ever)."""
    with server.client(timeout=30) as c:
        parent = c.start(write_parent(tmp_path, strategy="one_for_all", intensity=10, period="60s"))["id"]
        silent = c.start(write_probe(tmp_path, "silent"))["id"]
        slow_manifest = write_probe(tmp_path, "slow", type="permanent")
        slow_manifest.write_text(slow_manifest.read_text() + 'shutdown = "10s"\n\n[limits]\ncall_timeout = "4s"\n')
        slow = c.request(parent, f"Islow.toml ask-init {silent}".encode()).decode()    # its init: ~3.6 s
        assert not slow.startswith("error"), slow
        crashing, other = (spawn(c, parent, write_probe(tmp_path, n, type="permanent")) for n in ("b", "c"))
        with pytest.raises(TheaterError):
            c.request(crashing, b"t")                   # all three restart, in order: slow first
        wait_for(lambda: c.inspect(slow)["restarts"] == 1 and c.inspect(slow)["pid"] is not None, timeout=20,
                 what="the slow child's restart to begin its init")
        assert c.stop(slow)["status"] == "stopped"
        for kid in (crashing, other):
            wait_for(lambda kid=kid: (i := c.inspect(kid))["status"] == "running" and i["restarts"] == 1,
                     timeout=30, what=f"{kid} to be restarted after the stopped one")


def test_a_restart_asked_during_a_planned_restart_starts_the_actor_once(server, tmp_path):
    """A one_for_all restart waits for its siblings to stop; a parent's restart-child of the crashed
    child meanwhile started it, and the plan then started it again: two workers, one chain."""
    with server.client(timeout=30) as c:
        parent = c.start(write_parent(tmp_path, strategy="one_for_all", intensity=10, period="60s"))["id"]
        slow = spawn(c, parent, write_probe(tmp_path, "slow", type="permanent", shutdown="6s"))
        child = spawn(c, parent, crashing(tmp_path, "child"))
        freeze(c, slow)
        with pytest.raises(TheaterError):
            c.request(child, b"t")
        wait_restarting(c, child)
        assert c.request(parent, b"T" + child.encode()) == b"ok"
        # the plan goes on once the frozen sibling is killed (at 6 s) and restarted
        wait_for(lambda: (i := c.inspect(slow))["status"] == "running" and i["restarts"] == 1, timeout=30,
                 what="the frozen sibling to be restarted by the plan")
        assert len(workers_of(server, child)) == 1
        assert [e.type for e in c.events(child, types=["lifecycle/start"])] == ["lifecycle/start"] * 2


def test_an_ordered_restart_goes_on_when_its_first_actor_is_killed_before_it_is_ready(server, tmp_path):
    """The next sibling of an ordered restart starts once the one before is ready; one stopped
    (brutal_kill) before its init ended never was, and the next waited in "restarting" for ever."""
    with server.client(timeout=30) as c:
        silent = c.start(write_probe(tmp_path, "silent"))["id"]
        parent = c.start(write_parent(tmp_path, strategy="one_for_all", intensity=10, period="60s"))["id"]
        first = spawn(c, parent, write_probe(tmp_path, "a", type="permanent", shutdown="brutal_kill"))
        second = spawn(c, parent, write_probe(tmp_path, "b", type="permanent"))
        assert c.request(first, f"sask-init {silent}".encode()) == b"ok"      # its next init is slow
        with pytest.raises(TheaterError):
            c.request(second, b"t")
        wait_for(lambda: (i := c.inspect(first))["restarts"] == 1 and i["pid"] is not None, timeout=20,
                 what="the first child's restart to begin")
        assert c.request(parent, b"K" + first.encode()) == b"ok"
        wait_for(lambda: (i := c.inspect(second))["status"] == "running" and i["restarts"] == 1, timeout=30,
                 what="the second child to be restarted")


def test_a_child_not_ready_when_its_parents_restart_stops_waiting_is_stopped(server, tmp_path):
    """Likewise a restart-child: the new incarnation's init outlasts the parent's call, which
    returns Err; the child is stopped then, not brought up behind the parent's back."""
    with server.client(timeout=20) as c:
        parent, silent, slow = parent_and_slow_child(c, tmp_path)
        child = spawn(c, parent, slow)
        assert c.request(child, f"sask-init {silent}".encode()) == b"ok"      # its next init is slow
        reply = c.request(parent, f"T{child}".encode())
        assert reply.startswith(b"error: "), reply
        wait_for(lambda: c.inspect(child)["status"] not in ("running", "starting", "stopping", "restarting"),
                 timeout=30, what="the child to be stopped")
        (ex,) = [decode_data(e.data) for e in c.events(child, types=["lifecycle/exit"])][-1:]
        assert "not ready before its parent's call stopped waiting" in str(ex), ex


def test_a_restart_whose_old_incarnation_outlasts_the_parents_wait_does_not_go_on(server, tmp_path):
    """The parent's restart-child gave up while the child's old incarnation was still stopping
    (frozen: its stop takes its whole shutdown timeout); the new one is not started after."""
    with server.client(timeout=20) as c:
        manifest = write_parent(tmp_path)
        manifest.write_text(manifest.read_text() + '\n[limits]\ncall_timeout = "2s"\n')
        parent = c.start(manifest)["id"]
        frozen = write_probe(tmp_path, "frozen")
        frozen.write_text(frozen.read_text() + '\n[limits]\ncall_timeout = "2s"\n')
        child = spawn(c, parent, frozen)
        pid = freeze(c, child)
        reply = c.request(parent, f"T{child}".encode())
        assert reply.startswith(b"error: "), reply
        wait_for(lambda: not pid_alive(pid), timeout=30, what="the old incarnation to be killed")
        wait_for(lambda: c.inspect(child)["status"] not in ("running", "starting", "stopping", "restarting"),
                 timeout=30, what="the child to stay stopped")
        assert c.inspect(child)["incarnation"] == 1


def test_a_child_whose_restarted_init_failed_is_not_restarted_after_its_parent_stopped_waiting(server, tmp_path):
    """The parent's restart-child: the new incarnation's init traps, and its supervisor waits out
    a backoff longer than the parent's call before the next try. At the call's deadline the
    restart is called off and the child stopped, not tried again behind the parent's back."""
    with server.client(timeout=20) as c:
        manifest = write_parent(tmp_path)
        manifest.write_text(manifest.read_text() + '\n[limits]\ncall_timeout = "3s"\n')
        parent = c.start(manifest)["id"]
        child_manifest = crashing(tmp_path, "crashing", backoff="6s")
        child_manifest.write_text(child_manifest.read_text().replace(
            "[restart]", '[limits]\ncall_timeout = "3s"\n\n[restart]', 1))
        child = spawn(c, parent, child_manifest)
        assert c.request(child, b"strap-init") == b"ok"                 # its next init traps
        reply = c.request(parent, f"T{child}".encode())
        assert reply.startswith(b"error: "), reply
        wait_for(lambda: c.inspect(child)["status"] == "exited", timeout=30, what="the child to be stopped")
        starts = len([e for e in c.events(child) if e.type == "lifecycle/start"])
        assert starts == 2, starts              # its first, and the restart whose init trapped: no third

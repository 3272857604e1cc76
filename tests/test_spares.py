"""Spares confined ahead (worker.spare): once an actor with the usual view has started, the fork
server's spares put up that confinement while they wait, and the next such actor starts in one;
an actor whose view is wider never gets one; a spare confined ahead that dies before it is needed
ends the practice. (What a worker confined ahead can and cannot do: tests/test_sandbox.py.)"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from .conftest import ACTORS, EXAMPLES, Server, proc_status, wait_for

COUNTER = EXAMPLES / "counter" / "manifest.toml"


def wide(tmp_path: Path) -> Path:
    """An actor granted a directory: its view is wider than the usual one."""
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "wide.toml"
    path.write_text(f'name = "wide"\nversion = "0.1.0"\ncomponent = "{ACTORS / "handlers.wat"}"\n'
                    + "".join(f'[[handler]]\ntype = "{t}"\n' for t in
                              ("runtime", "message-server", "timing", "random", "environment"))
                    + '[[handler]]\ntype = "filesystem"\npath = "data"\n')
    return path


def forked_unconfined(server: Server) -> list[int]:
    """The spares the fork server says it forked not to confine themselves ahead."""
    return [int(pid) for pid in re.findall(r"zygote: spare (\d+) forked$", server.log_tail(5000), re.M)]


def test_after_the_first_usual_actor_spares_wait_confined_and_the_next_one_takes_one(server, tmp_path):
    before = wait_for(lambda: s if len(s := server.spares()) >= 2 else None, timeout=60, what="two spares")
    # the fork server does not know the usual confinement yet: its spares wait unconfined and, so
    # that Landlock binds every thread they will have, with one thread
    for p in before:
        assert proc_status(p.pid)["Seccomp"] == "0" and p.num_threads() == 1, proc_status(p.pid)
    with server.client() as c:
        first = c.start(COUNTER)
        assert first["pid"] in {p.pid for p in before}
        ahead = server.all_spares_confined_ahead()
        for pid in ahead:
            st = proc_status(pid)
            assert st["NoNewPrivs"] == "1" and int(st["CapEff"], 16) == 0, st
        second = c.start(COUNTER)
        assert second["pid"] in ahead
        assert c.request(second["id"], b"x") == b"1"
        assert c.request(first["id"], b"x") == b"1"
        # an actor whose view is wider never gets one: it confines itself once it knows its actor
        seen = set(forked_unconfined(server))
        other = c.start(wide(tmp_path))
        assert other["pid"] not in ahead
        assert c.request(other["id"], b"w" + b"notes.txt\0hello") == b"ok"
        assert (tmp_path / "data" / "notes.txt").read_text() == "hello"
        assert proc_status(other["pid"])["Seccomp"] == "2"
        # from then on a spare for such actors waits too, unconfined, beside the confined ones
        waiting = wait_for(lambda: set(forked_unconfined(server)) - seen - {other["pid"]}, timeout=60,
                           what="a spare forked for actors with a wider view")
        third = c.start(wide(tmp_path))
        assert third["pid"] in waiting
        assert c.request(third["id"], b"r" + b"notes.txt") == b"ok:hello"


def test_a_spare_confined_ahead_that_dies_unneeded_ends_the_practice(server):
    with server.client() as c:
        c.start(COUNTER)
        ahead = wait_for(lambda: server.spares_confined_ahead() or None, timeout=60, what="a spare confined ahead")
        os.kill(min(ahead), signal.SIGKILL)
        wait_for(lambda: "spares no longer confine themselves ahead" in server.log_tail(400), timeout=30,
                 what="the fork server's note")
        # the others are let go; the spares forked from then on confine themselves once assigned
        wait_for(lambda: len(server.spares()) >= 2 and not server.spares_confined_ahead(), timeout=60,
                 what="spares that are not confined ahead")
        for _ in range(3):
            actor = c.start(COUNTER)
            assert c.request(actor["id"], b"x") == b"1"
            assert proc_status(actor["pid"])["Seccomp"] == "2"


def own_groups(pid: int) -> list[Path]:
    """The cgroup directories a spare made for itself (``w-<pid>``), in every hierarchy it is in."""
    out = []
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if path.endswith(f"/w-{pid}"):
            out.append(Path("/sys/fs/cgroup", *([controllers] if controllers else []), path.lstrip("/")))
    return out


def test_spares_let_go_leave_no_cgroup_behind(server):
    """A spare makes its own groups; the server, which removes an actor's, never knew of a spare
    the fork server let go unused (here: forked before it knew the usual confinement)."""
    # (a spare joins its groups a moment after its fork)
    before = wait_for(lambda: s if len(s := [p for p in server.spares() if own_groups(p.pid)]) >= 2 else None,
                      timeout=60, what="two spares in groups of their own")
    groups = [g for p in before for g in own_groups(p.pid)]
    assert all(g.is_dir() for g in groups)
    with server.client() as c:
        first = c.start(COUNTER)
        server.all_spares_confined_ahead()
        let_go = [g for g in groups if g.name != f"w-{first['pid']}"]
        assert let_go
        wait_for(lambda: not [g for g in let_go if g.exists()], timeout=30, what="the groups of spares let go to go")
        assert c.request(first["id"], b"x") == b"1"


def test_a_burst_of_spawns_never_finds_the_spares_gone(server, tmp_path):
    """Each spawn used to postpone the spares' top-up: in a burst (a spawn every few ms), every
    fourth actor waited for a spare forked on demand, unrehearsed (25-50 ms, not 7). Likewise for
    actors with a wider view, which have one spare of their own."""
    with server.client() as c:
        c.start(COUNTER)
        server.all_spares_confined_ahead()
        for _ in range(10):
            c.start(COUNTER)
        assert "no spare left" not in server.log_tail(5000)
        # the first actor with a wider view finds no spare for it (a fork on demand), and teaches
        # the fork server to keep one
        seen = set(forked_unconfined(server))
        first = c.start(wide(tmp_path))
        wait_for(lambda: set(forked_unconfined(server)) - seen - {first["pid"]}, timeout=60,
                 what="a spare for wider views")
        for _ in range(5):
            c.start(wide(tmp_path))
    assert server.log_tail(5000).count("no spare left") == 1

"""Supervision on real workers: a supervising actor (tests/actors/parent.wat) and its probe children.

Each test writes a copy of parent.toml into tmp_path (with the ``[restart]`` table it needs:
the parent's strategy/intensity/period govern how its children are restarted) and child
manifests next to it (their ``[restart] type`` says whether they are restarted). The parent
spawns a child on ``S<manifest>`` and notes every supervisor callback it receives; ``N``
returns the notes: "error:<id>:<error-type>/<detail>;", "exit:<id>:<data>;",
"external:<id>:-;". Children fail on request: "t" traps, "x<msg>" returns Err, "z<data>"
calls runtime.shutdown, or the test SIGKILLs the worker's pid.

Top-level actors are supervised by the root: one_for_one, intensity 3 within 5 s.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from theater import protocol
from theater.client import Client
from theater.errors import NotFound, Refused, TheaterError
from theater.events import decode_data

from .conftest import ACTORS, one_line_error, pid_alive, running, wait_for

PROBE = ACTORS / "probe.wat"
PARENT = ACTORS / "parent.wat"


# ---- manifests ---------------------------------------------------------------------------------------

def restart_table(**keys: Any) -> str:
    """A ``[restart]`` table: strings quoted, numbers as they are."""
    if not keys:
        return ""
    lines = [f"{k} = {orjson.dumps(v).decode() if isinstance(v, str) else v}" for k, v in keys.items()]
    return "\n[restart]\n" + "\n".join(lines) + "\n"


def beside(tmp_path: Path, component: Path) -> str:
    """A copy of ``component`` in tmp_path, named as a manifest there refers to it: a spawn may
    only name files in its parent's directory."""
    if not (tmp_path / component.name).exists():
        shutil.copy(component, tmp_path / component.name)
    return component.name


def write_parent(tmp_path: Path, name: str = "parent", **restart: Any) -> Path:
    text = (ACTORS / "parent.toml").read_text()
    assert 'component = "parent.wat"' in text
    beside(tmp_path, PARENT)
    text = text.replace('name = "parent"', f'name = "{name}"')
    path = tmp_path / f"{name}.toml"
    path.write_text(text + restart_table(**restart))
    return path


def write_probe(tmp_path: Path, name: str, extra: str = "", **restart: Any) -> Path:
    """A probe manifest in tmp_path (next to parent.toml, so the parent spawns it as ``S<name>.toml``)."""
    text = (f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{beside(tmp_path, PROBE)}"\n{extra}\n'
            '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n')
    path = tmp_path / f"{name}.toml"
    path.write_text(text + restart_table(**restart))
    return path


# ---- helpers -----------------------------------------------------------------------------------------

@pytest.fixture
def c(server) -> Iterator[Client]:
    with server.client(timeout=20) as client:
        yield client


def spawn(c: Client, parent: str, manifest: Path) -> str:
    """The parent spawns a child from ``manifest`` (relative to the parent's manifest directory)."""
    reply = c.request(parent, b"S" + manifest.name.encode())
    assert not reply.startswith(b"error"), reply
    child = reply.decode()
    assert c.inspect(child)["parent"] == parent
    return child


def actors(c: Client) -> list[dict[str, Any]]:
    return c.call("list")[0]["actors"]


def notes(c: Client, parent: str) -> str:
    return c.request(parent, b"N").decode()


def watch(get: Any, ok: Any, what: str, timeout: float = 10) -> Any:
    """Polls ``get()`` until ``ok(value)``; on timeout the failure shows the last value seen."""
    seen: list[Any] = [None]

    def check() -> Any:
        seen[0] = get()
        return seen[0] if ok(seen[0]) else None
    try:
        return wait_for(check, timeout=timeout, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: {seen[0]!r}") from None


def wait_note(c: Client, parent: str, fragment: str) -> str:
    return watch(lambda: notes(c, parent), lambda n: fragment in n, f"the parent's notes to contain {fragment!r}")


def exits(c: Client, actor: str) -> list[dict[str, Any]]:
    return [decode_data(e.data) for e in c.events(actor, types=["lifecycle/exit"])]


def wait_exits(c: Client, actor: str, n: int = 1) -> list[dict[str, Any]]:
    return wait_for(lambda: len(ex := exits(c, actor)) >= n and ex, timeout=10,
                    what=f"{n} lifecycle/exit event(s) of {actor}")


def event_times(c: Client, actor: str, event_type: str) -> list[int]:
    return [e.time_ns for e in c.events(actor, types=[event_type])]


def wait_restarted(c: Client, actor: str, old_pid: int, restarts: int = 1) -> dict[str, Any]:
    info = watch(lambda: c.inspect(actor),
                 lambda i: i["status"] == "running" and i["restarts"] == restarts and i["pid"] not in (None, old_pid),
                 f"{actor} to be running again (restart {restarts})")
    assert pid_alive(info["pid"])
    return info


def wait_committed(c: Client, actor: str, state: bytes) -> None:
    """Until the chain holds the event that set ``state`` (a reply goes out before its events are
    committed; a restarted actor resumes from its last *committed* state)."""
    def held() -> bool:
        return any(decode_data(e.data).get("state") == state for e in c.events(actor, types=["wasm"]))
    wait_for(held, timeout=10, what=f"{actor}'s state {state!r} to be committed")


def set_state(c: Client, actor: str, state: bytes) -> None:
    assert c.request(actor, b"s" + state) == b"ok"
    wait_committed(c, actor, state)


def fail(c: Client, actor: str, message: bytes) -> None:
    """Makes ``actor`` fail on ``message`` (the request itself fails)."""
    with pytest.raises(TheaterError):
        c.request(actor, message)


def kill9(c: Client, actor: str) -> int:
    pid = c.inspect(actor)["pid"]
    assert pid and pid_alive(pid)
    os.kill(pid, signal.SIGKILL)
    return pid


def gone(c: Client, actor: str) -> bool:
    try:
        c.inspect(actor)
    except NotFound:
        return True
    return False


def family(c: Client, tmp_path: Path, parent_restart: dict[str, Any],
           *children: tuple[str, dict[str, Any]]) -> tuple[str, list[str]]:
    """Starts a parent with ``parent_restart`` and spawns ``children`` ((name, child restart)) in order."""
    parent = c.start(write_parent(tmp_path, **parent_restart))["id"]
    kids = [spawn(c, parent, write_probe(tmp_path, name, **r)) for name, r in children]
    assert c.request(parent, b"L").decode() == ",".join(kids)
    return parent, kids


# ---- a. SIGKILL ------------------------------------------------------------------------------------

def test_killed_permanent_child_comes_back_with_its_last_state(server, c, tmp_path):
    parent, (child,) = family(c, tmp_path, {}, ("child", {"type": "permanent"}))
    set_state(c, child, b"foo")
    old = kill9(c, child)

    wait_note(c, parent, f"error:{child}:")
    info = wait_restarted(c, child, old)
    assert not pid_alive(old)
    assert info["incarnation"] == 2
    assert info["last_exit"]["kind"] == "abnormal"
    assert "SIGKILL" in info["last_error"], info["last_error"]

    n = notes(c, parent)
    assert n.startswith(f"error:{child}:internal/killed"), n
    assert n.count(";") == 1, n

    assert c.request(parent, b"G" + child.encode()) == b"foo"
    # get-child-events hands the parent the child's chain as stored, both incarnations
    types = c.request(parent, b"E" + child.encode()).decode().split(",")
    assert types == [e.type for e in c.events(child)][: len(types)], types
    assert types[0] == "lifecycle/start" and types.count("lifecycle/start") == 2, types
    s = server.cli("state", child)
    assert (s.code, s.out) == (0, b"foo"), s.err
    assert c.request(child, b"ehello") == b"hello"

    (ex,) = exits(c, child)
    assert (ex["kind"], ex["reason"], ex["action"]) == ("abnormal", "killed", "restart")
    starts = [decode_data(e.data) for e in c.events(child, types=["lifecycle/start"])]
    assert [s["mode"] for s in starts] == ["init", "resume"]
    assert starts[1]["state"] == b"foo"
    # the parent itself was not touched
    p = c.inspect(parent)
    assert (p["status"], p["restarts"]) == ("running", 0)


def test_a_query_lost_in_a_chain_restart_is_answered_with_an_error(server, c, tmp_path):
    """get-child-events is answered by the chain process; if that dies with the query in hand,
    the parent hears so at once (not at its call timeout) and may ask again."""
    parent, (child,) = family(c, tmp_path, {}, ("child", {"type": "permanent"}))
    chain = server.chain_pid()
    assert chain is not None
    os.kill(chain, signal.SIGSTOP)                 # the query waits in the chain's queue
    answer: dict[str, bytes] = {}
    with server.client(timeout=20) as c2:
        asking = threading.Thread(target=lambda: answer.update(r=c2.request(parent, b"E" + child.encode())))
        asking.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        os.kill(chain, signal.SIGKILL)
        asking.join(20)
    assert answer["r"].startswith(b"error: ") and b"restarted" in answer["r"], answer
    assert time.monotonic() - t0 < 10
    types = watch(lambda: c.request(parent, b"E" + child.encode()), lambda r: not r.startswith(b"error"),
                  "the parent's next get-child-events to succeed")
    assert types.startswith(b"lifecycle/start"), types


def test_get_child_events_returns_the_whole_chain_or_says_why_not(c, tmp_path):
    """The chain answers a page of 2,000 events at a time: a parent got the first page of a longer
    chain as if it were the whole. Now it gets every event, or an Err when they would not fit the
    memory it takes one message into."""
    parent, (child,) = family(c, tmp_path, {}, ("child", {"type": "permanent"}))
    assert c.request(child, b"n2500") == b"logged"
    length = len(c.events(child))
    types = c.request(parent, b"E" + child.encode()).decode().split(",")
    assert len(types) == length > 2500, (len(types), length)
    assert types.count("theater:simple/runtime/log") == 2500 + 1          # its init logs once too

    small = write_parent(tmp_path, "small")
    small.write_text(small.read_text() + '\n[limits]\nmemory = "1MiB"\n')
    small_parent = c.start(small)["id"]
    kid = spawn(c, small_parent, write_probe(tmp_path, "kid", '[limits]\nmemory = "1MiB"'))
    assert c.request(kid, b"n3000") == b"logged"        # ~100 bytes an event: over 256 KiB
    reply = c.request(small_parent, b"E" + kid.encode())
    assert reply.startswith(b"error: the chain of " + kid.encode() + b" is larger than this actor's message limit"), \
        reply


# ---- b. trap -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["transient", "temporary"])
def test_trapping_child_is_reported_and_restarted_by_type(c, tmp_path, kind):
    parent, (child,) = family(c, tmp_path, {}, ("child", {"type": kind}))
    old = c.inspect(child)["pid"]
    fail(c, child, b"t")

    n = wait_note(c, parent, f"error:{child}:")
    assert f"error:{child}:internal/trap" in n, n
    assert "unreachable" in n, n
    (ex,) = wait_exits(c, child)
    assert (ex["kind"], ex["reason"]) == ("abnormal", "trap")
    if kind == "transient":
        assert ex["action"] == "restart"
        wait_restarted(c, child, old)
        assert c.request(child, b"eback") == b"back"
    else:
        assert ex["action"] == "exited"
        info = wait_for(lambda: (i := c.inspect(child))["status"] == "failed" and i, what="the child failed")
        assert info["pid"] is None and info["restarts"] == 0
        assert "unreachable" in info["last_error"]
        assert c.request(parent, b"L") == b""
    wait_for(lambda: not pid_alive(old), what="the trapped worker to exit")


# ---- c. Err ------------------------------------------------------------------------------------------

def test_child_returning_err_is_reported_with_its_message(c, tmp_path):
    parent, (child,) = family(c, tmp_path, {}, ("child", {"type": "permanent"}))
    old = c.inspect(child)["pid"]
    fail(c, child, b"xboom")

    n = wait_note(c, parent, f"error:{child}:")
    assert f"error:{child}:internal/" in n and "boom" in n, n
    info = wait_restarted(c, child, old)
    assert "boom" in info["last_error"]
    (ex,) = exits(c, child)
    assert (ex["kind"], ex["reason"], ex["error"], ex["action"]) == ("abnormal", "error", "boom", "restart")


# ---- d. shutdown -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["transient", "permanent"])
def test_child_shutdown_is_a_normal_exit(c, tmp_path, kind):
    parent, (child,) = family(c, tmp_path, {}, ("child", {"type": kind}))
    old = c.inspect(child)["pid"]
    assert c.request(child, b"zbye") == b"bye"

    n = wait_note(c, parent, f"exit:{child}:")
    assert n == f"exit:{child}:bye;", n
    (ex,) = wait_exits(c, child)
    assert ex["kind"] == "normal"
    assert ex["data"] == b"bye"
    if kind == "transient":
        assert ex["action"] == "exited"
        info = wait_for(lambda: (i := c.inspect(child))["status"] == "exited" and i, what="the child exited")
        assert info["pid"] is None and info["restarts"] == 0
        assert info["last_error"] is None
        assert c.request(parent, b"L") == b""
    else:
        assert ex["action"] == "restart"
        wait_restarted(c, child, old)
        assert c.request(parent, b"L").decode() == child
    wait_for(lambda: not pid_alive(old), what="the old worker to exit")


# ---- e. external stop --------------------------------------------------------------------------------

def test_stop_by_someone_else_is_an_external_stop(server, c, tmp_path):
    parent, (child, other) = family(c, tmp_path, {}, ("child", {"type": "permanent"}),
                                    ("other", {"type": "permanent"}))
    pid = c.inspect(child)["pid"]
    r = server.cli("stop", child)
    assert r.code == 0, r.err
    assert not pid_alive(pid)

    n = wait_note(c, parent, f"external:{child}:")
    assert n == f"external:{child}:-;", n
    assert gone(c, child)                       # a stop forgets the actor; its chain stays
    (ex,) = wait_exits(c, child)
    assert (ex["kind"], ex["action"]) == ("shutdown", "stopped")
    assert c.request(parent, b"L").decode() == other
    assert c.inspect(other)["restarts"] == 0


def test_stop_by_the_parent_is_not_reported_to_it(c, tmp_path):
    parent, (child,) = family(c, tmp_path, {}, ("child", {"type": "permanent"}))
    pid = c.inspect(child)["pid"]
    assert c.request(parent, b"K" + child.encode()) == b"ok"
    assert not pid_alive(pid)
    assert c.request(parent, b"L") == b""
    (ex,) = wait_exits(c, child)
    assert (ex["kind"], ex["action"]) == ("shutdown", "stopped")
    time.sleep(0.3)                             # a callback would be in the parent's mailbox by now
    assert notes(c, parent) == ""


# ---- f. state = "initial" ----------------------------------------------------------------------------

def test_restart_with_state_initial_starts_from_init_state(server, c, tmp_path):
    parent = c.start(write_parent(tmp_path))["id"]
    manifest = write_probe(tmp_path, "fresh", extra='init_state = { v = 1 }\n', type="permanent", state="initial")
    child = spawn(c, parent, manifest)
    initial = orjson.dumps({"v": 1})
    assert c.request(parent, b"G" + child.encode()) == initial
    set_state(c, child, b"foo")
    assert c.inspect(child)["restart"]["state"] == "initial"
    old = c.inspect(child)["pid"]
    fail(c, child, b"t")

    wait_restarted(c, child, old)
    assert c.request(parent, b"G" + child.encode()) == initial
    s = server.cli("state", child)
    assert (s.code, s.out) == (0, initial), s.err
    starts = [decode_data(e.data) for e in c.events(child, types=["lifecycle/start"])]
    assert [s["mode"] for s in starts] == ["init", "init"]
    assert starts[1]["state"] == initial


# ---- g. the OTP matrix on real workers (top-level actors, under the root) ------------------------------

@pytest.mark.parametrize(("kind", "how", "restarted"), [
    ("permanent", "normal", True),
    ("permanent", "abnormal", True),
    ("transient", "normal", False),
    ("transient", "abnormal", True),
    ("temporary", "normal", False),
    ("temporary", "abnormal", False),
    ("permanent", "shutdown", False),         # `theater stop`: a requested stop is never undone
])
def test_restart_matrix(server, c, tmp_path, kind, how, restarted):
    probe = c.start(write_probe(tmp_path, f"m-{kind}", type=kind))["id"]
    old = c.inspect(probe)["pid"]
    if how == "normal":
        assert c.request(probe, b"zdone") == b"bye"
    elif how == "abnormal":
        fail(c, probe, b"t")
    else:
        assert server.cli("stop", probe).code == 0
    (ex,) = wait_exits(c, probe)
    assert ex["kind"] == how
    assert ex["action"] == ("restart" if restarted else "stopped" if how == "shutdown" else "exited")
    if restarted:
        wait_restarted(c, probe, old)
    elif how == "shutdown":
        assert gone(c, probe)
    else:
        info = wait_for(lambda: (i := c.inspect(probe))["status"] in ("exited", "failed") and i,
                        what="the actor to be left stopped")
        assert info["status"] == ("exited" if how == "normal" else "failed")
        assert info["pid"] is None and info["restarts"] == 0
    wait_for(lambda: not pid_alive(old), what="the old worker to exit")


@pytest.mark.parametrize(("message", "kind", "reason"), [
    (b"t", "abnormal", "trap"),
    (b"zbye", "normal", "shutdown"),
])
def test_concurrent_exits_are_each_classified_by_their_cause(c, tmp_path, message, kind, reason):
    """A worker tells the server why it ends ("failed": trap / "exiting": shutdown), then exits
    (status 70 / 0). Many at once (a busy server): every exit must still be recorded as what it
    was, never as an unexplained "crash: the worker process exited with status N" (which, for a
    shutdown, turns a normal exit abnormal: a transient actor would be restarted, and a parent
    told of an error instead of an exit)."""
    manifest = write_probe(tmp_path, "many", type="temporary")
    seen: list[tuple[str, str, str | None]] = []
    for _ in range(6):
        probes = [c.start(manifest)["id"] for _ in range(25)]
        for p in probes:    # not waiting for each answer (it comes once the call ran): all end at once
            c.sock.send_multipart(protocol.encode({"k": "send", "id": f"end-{p}", "actor": p}, message))
        for p in probes:
            (ex,) = wait_exits(c, p)
            seen.append((ex["kind"], ex["reason"], ex["error"]))
        for p in probes:
            c.stop(p)
    wrong = [s for s in seen if s[:2] != (kind, reason)]
    assert not wrong, f"{len(wrong)} of {len(seen)}: {wrong[:3]}"


# ---- h. strategies -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("strategy", "affected"), [
    ("one_for_one", "b"),
    ("one_for_all", "abc"),
    ("rest_for_one", "bc"),
])
def test_strategy_restarts_the_right_siblings(c, tmp_path, strategy, affected):
    parent, kids = family(c, tmp_path, {"strategy": strategy},
                          *[(n, {"type": "permanent"}) for n in "abc"])
    ids = dict(zip("abc", kids, strict=True))
    pids = {n: c.inspect(i)["pid"] for n, i in ids.items()}
    assert c.inspect(parent)["restart"]["strategy"] == strategy
    kill9(c, ids["b"])

    for n in affected:
        wait_restarted(c, ids[n], pids[n])
    for n in sorted(set("abc") - set(affected)):
        info = c.inspect(ids[n])
        assert (info["status"], info["pid"], info["restarts"]) == ("running", pids[n], 0), n
        assert exits(c, ids[n]) == []
    for n in affected:
        assert not pid_alive(pids[n])
    assert c.request(parent, b"L").decode() == ",".join(kids)      # same children, same order

    # only the failure reaches the parent: the siblings it stopped itself are not reported
    n = wait_note(c, parent, f"error:{ids['b']}:")
    assert n.count(";") == 1, n

    # the siblings were stopped (reverse start order) before the failed child started again,
    # then all started in start order
    stopped = [x for x in "cba" if x in affected and x != "b"]
    stop_times = []
    for x in stopped:
        (ex,) = exits(c, ids[x])
        assert (ex["kind"], ex["action"]) == ("shutdown", "stopped"), ex
        stop_times.append(event_times(c, ids[x], "lifecycle/exit")[0])
    assert stop_times == sorted(stop_times)
    restart_times = [event_times(c, ids[x], "lifecycle/start")[1] for x in "abc" if x in affected]
    assert restart_times == sorted(restart_times)
    if stop_times:
        assert max(stop_times) < min(restart_times)


# ---- i. escalation -------------------------------------------------------------------------------------

def test_restart_intensity_exceeded_fails_the_supervisor(server, c, tmp_path):
    parent, (bystander, child) = family(c, tmp_path, {"intensity": 1, "period": "10s"},
                                        ("bystander", {"type": "permanent"}), ("child", {"type": "permanent"}))
    parent_pid = c.inspect(parent)["pid"]
    bystander_pid = c.inspect(bystander)["pid"]

    old = c.inspect(child)["pid"]
    fail(c, child, b"t")
    wait_restarted(c, child, old)               # 1 restart in 10 s: allowed
    child_pid = c.inspect(child)["pid"]
    fail(c, child, b"t")                        # the 2nd exceeds intensity 1: the parent fails

    ex = wait_exits(c, child, 2)
    assert [e["action"] for e in ex] == ["restart", "escalate"]
    pex = wait_exits(c, parent)
    assert pex[0]["kind"] == "abnormal", pex
    assert "escalat" in pex[0]["reason"] or "intensity" in (pex[0]["error"] or ""), pex

    # the supervisor's children were stopped before it was killed
    by = wait_exits(c, bystander)
    assert (by[0]["kind"], by[0]["action"]) == ("shutdown", "stopped"), by
    assert event_times(c, bystander, "lifecycle/exit")[0] < event_times(c, parent, "lifecycle/exit")[0]
    for pid in (parent_pid, bystander_pid, child_pid):
        wait_for(lambda pid=pid: not pid_alive(pid), what=f"pid {pid} to exit")

    # a top-level actor: the root (intensity 3 in 5 s) restarts it, without its old children
    assert pex[0]["action"] == "restart", pex
    info = wait_restarted(c, parent, parent_pid)
    err = info["last_error"].lower()
    assert "intensity" in err or "escalat" in err, info["last_error"]
    assert c.request(parent, b"L") == b""
    assert info["children"] == []
    assert gone(c, bystander) and gone(c, child)
    tree = orjson.loads(server.cli("tree", "--json").out)
    assert [(n["id"], n["children"]) for n in tree] == [(parent, [])]
    # it works, and resumed its last committed state: the note of the first failure (the note of
    # the second may be lost: the parent is SIGKILLed right after it is sent)
    n = notes(c, parent)
    assert n.startswith(f"error:{child}:internal/"), n


def test_escalated_supervisor_says_why_it_failed(c, tmp_path):
    """The supervisor's own exit (and its last_error) names the cause: its restart intensity was
    exceeded, not just "the server killed it (escalation)"."""
    parent, (child,) = family(c, tmp_path, {"intensity": 0}, ("child", {"type": "permanent"}))
    parent_pid = c.inspect(parent)["pid"]
    fail(c, child, b"t")                        # intensity 0: the first restart exceeds it

    (ex,) = wait_exits(c, child)
    assert ex["action"] == "escalate"
    (pex,) = wait_exits(c, parent)
    assert (pex["kind"], pex["reason"]) == ("abnormal", "escalation"), pex
    info = wait_restarted(c, parent, parent_pid)
    assert "intensity" in info["last_error"], info["last_error"]
    assert "intensity" in (pex["error"] or ""), pex


def test_restarted_supervisor_starts_with_a_clean_restart_history(c, tmp_path):
    """OTP: a supervisor's restart intensity is counted per incarnation (a restarted supervisor is
    a new process with no restarts yet). After an escalation, the new incarnation may restart a
    child again, intensity permitting, instead of failing at once on the old count."""
    parent, (child,) = family(c, tmp_path, {"intensity": 1, "period": "10s"}, ("child", {"type": "permanent"}))
    parent_pid = c.inspect(parent)["pid"]
    old = c.inspect(child)["pid"]
    fail(c, child, b"t")
    wait_restarted(c, child, old)
    fail(c, child, b"t")                        # exceeds intensity 1: the parent fails, the root restarts it
    wait_restarted(c, parent, parent_pid)

    fresh = spawn(c, parent, write_probe(tmp_path, "fresh", type="permanent"))
    old = c.inspect(fresh)["pid"]
    fail(c, fresh, b"t")                        # the new incarnation's first restart: allowed
    (ex,) = wait_exits(c, fresh)
    assert ex["action"] == "restart", ex
    wait_restarted(c, fresh, old)
    assert c.inspect(parent)["restarts"] == 1


def test_escalation_goes_to_the_supervisors_own_parent(c, tmp_path):
    """grand -> mid (intensity 0) -> leaf: leaf fails, mid fails, and grand's policy restarts mid
    (grand hears of it as a child error); leaf is gone, grand is untouched."""
    grand = c.start(write_parent(tmp_path, "grand"))["id"]
    mid = spawn(c, grand, write_parent(tmp_path, "mid", type="permanent", intensity=0))
    leaf = spawn(c, mid, write_probe(tmp_path, "leaf", type="permanent"))
    mid_pid, leaf_pid = c.inspect(mid)["pid"], c.inspect(leaf)["pid"]
    grand_pid = c.inspect(grand)["pid"]
    fail(c, leaf, b"t")

    n = wait_note(c, grand, f"error:{mid}:")
    assert f"error:{mid}:internal/escalation" in n, n
    (ex,) = wait_exits(c, leaf)
    assert ex["action"] == "escalate"
    (mex,) = wait_exits(c, mid)
    assert (mex["kind"], mex["action"]) == ("abnormal", "restart"), mex
    info = wait_restarted(c, mid, mid_pid)
    assert info["children"] == [] and c.request(mid, b"L") == b""
    assert gone(c, leaf) and not pid_alive(leaf_pid)
    g = c.inspect(grand)
    assert (g["status"], g["pid"], g["restarts"]) == ("running", grand_pid, 0)
    assert c.request(grand, b"L").decode() == mid
    assert exits(c, grand) == []


def test_killed_parent_takes_its_children_down(c, tmp_path):
    """A supervising actor that dies ends its children; the root restarts it without them."""
    parent, kids = family(c, tmp_path, {}, *[(n, {"type": "permanent"}) for n in "ab"])
    pids = [c.inspect(k)["pid"] for k in kids]
    old = kill9(c, parent)

    info = wait_restarted(c, parent, old)
    for pid in pids:
        wait_for(lambda pid=pid: not pid_alive(pid), what=f"child pid {pid} to exit")
    assert info["children"] == [] and c.request(parent, b"L") == b""
    for k in kids:      # forgotten once its exit is in its chain, which may follow its process's end
        wait_for(lambda k=k: gone(c, k), timeout=30, what=f"child {k} to be forgotten")
        (ex,) = wait_exits(c, k)
        assert (ex["kind"], ex["action"]) == ("shutdown", "stopped"), ex


# ---- j. at the root ------------------------------------------------------------------------------------

def test_root_gives_up_after_its_intensity(c, tmp_path):
    probe = c.start(write_probe(tmp_path, "flaky", type="permanent"))["id"]
    for i in range(1, 4):
        old = c.inspect(probe)["pid"]
        fail(c, probe, b"t")
        wait_restarted(c, probe, old, restarts=i)
    old = c.inspect(probe)["pid"]
    fail(c, probe, b"t")                        # the 4th restart within 5 s exceeds intensity 3

    ex = wait_exits(c, probe, 4)
    assert [e["action"] for e in ex] == ["restart"] * 3 + ["give_up"]
    info = wait_for(lambda: (i := c.inspect(probe))["status"] == "failed" and i, what="the actor to be failed")
    assert info["pid"] is None and info["restarts"] == 3
    assert "intensity" in info["last_error"], info["last_error"]
    wait_for(lambda: not pid_alive(old), what="the last worker to exit")
    time.sleep(0.5)
    assert c.inspect(probe)["status"] == "failed"     # left stopped
    with pytest.raises(TheaterError):
        c.request(probe, b"eping")


# ---- k. children stop with their parent ----------------------------------------------------------------

def test_stopping_the_parent_stops_its_children_in_reverse_order(server, c, tmp_path):
    parent, kids = family(c, tmp_path, {}, *[(n, {"type": "permanent"}) for n in "abc"])
    pids = [c.inspect(k)["pid"] for k in [parent, *kids]]
    r = server.cli("stop", parent)
    assert r.code == 0, r.err
    for pid in pids:
        assert not pid_alive(pid), pid
    listed = server.cli("list", "--json")
    assert orjson.loads(listed.out) == []
    for k in kids:
        assert gone(c, k)
        (ex,) = wait_exits(c, k)
        assert (ex["kind"], ex["action"]) == ("shutdown", "stopped")
    times = [event_times(c, a, "lifecycle/exit")[0] for a in [*reversed(kids), parent]]
    assert times == sorted(times), "c, b, a, then the parent"


# ---- l. tree -------------------------------------------------------------------------------------------

def test_tree_json_nests_children_under_their_parent(server, c, tmp_path):
    parent, (a, b) = family(c, tmp_path, {"strategy": "rest_for_one"}, ("a", {"type": "transient"}),
                            ("b", {"type": "temporary"}))
    old = kill9(c, a)
    wait_restarted(c, a, old)
    loner = c.start(write_probe(tmp_path, "loner"))["id"]

    r = server.cli("tree", "--json")
    assert r.code == 0, r.err
    tree = orjson.loads(r.out)
    assert [n["id"] for n in tree] == [parent, loner]
    top, single = tree
    assert (top["name"], top["status"], top["restarts"], top["strategy"]) == ("parent", "running", 0,
                                                                              "rest_for_one")
    assert single["children"] == []
    ka, kb = top["children"]
    assert (ka["id"], ka["name"], ka["status"], ka["restarts"], ka["restart"]) == (a, "a", "running", 1,
                                                                                   "transient")
    assert ka["parent"] == parent and ka["children"] == []
    assert "SIGKILL" in ka["last_error"]
    # b was temporary: stopped by rest_for_one and not restarted; it stays in the tree as exited
    # (as a stopped top-level actor stays in `theater list`), but not in the parent's list-children
    assert (kb["id"], kb["status"], kb["pid"], kb["restarts"], kb["restart"]) == (b, "exited", None, 0,
                                                                                  "temporary")
    assert c.request(parent, b"L").decode() == a
    text = server.cli("tree")
    assert text.code == 0 and "restarts=1" in text.text and a[:8] in text.text


def test_an_actor_has_no_more_children_at_once_than_its_limit(c, tmp_path):
    """Red-team finding: a parent spawned children in a loop without bound (60 in 1.2 s, two
    gigabytes). Its [limits] children caps how many it has at once; a stopped one frees a place."""
    manifest = write_parent(tmp_path)
    manifest.write_text(manifest.read_text() + "\n[limits]\nchildren = 2\n")
    parent = c.start(manifest)["id"]
    probe = write_probe(tmp_path, "kid", extra="[limits]\nchildren = 2")
    first, _second = spawn(c, parent, probe), spawn(c, parent, probe)
    reply = c.request(parent, b"S" + probe.name.encode())
    assert reply.startswith(b"error: ") and b"as many as its [limits] children (2) allows" in reply, reply
    assert c.request(parent, f"K{first}".encode()) == b"ok"
    spawn(c, parent, probe)
    looser = write_probe(tmp_path, "looser", extra="[limits]\nchildren = 3")
    reply = c.request(parent, b"S" + looser.name.encode())
    assert reply.startswith(b"error: ") and b"children = 3: looser than its parent" in reply, reply


def test_a_tree_and_the_server_hold_no_more_live_actors_than_their_bounds(home, tmp_path):
    """Each actor is a process: [limits] children bounds one parent's, but a tree grew with its depth
    and nothing bounded the server's. [limits] descendants bounds a tree beneath each of its
    members, --max-actors the server's; a start, a spawn or a restart past either is refused with
    one line (the parent's Err is in its chain), the tree runs on, and an actor that ends frees
    its place."""
    manifest = write_parent(tmp_path)
    manifest.write_text(manifest.read_text() + "\n[limits]\ndescendants = 2\n")
    mid = write_parent(tmp_path, "mid")
    mid.write_text(mid.read_text() + "\n[limits]\ndescendants = 2\n")
    probe = write_probe(tmp_path, "kid", extra="[limits]\ndescendants = 2")
    lone = write_probe(tmp_path, "lone", "[limits]\ndescendants = 2", type="temporary")

    def ends(actor: str) -> None:
        assert c.request(actor, b"zbye") == b"bye"
        wait_for(lambda: c.inspect(actor)["status"] == "exited", timeout=30, what=f"{actor} to exit")
    with running(home, "--max-actors", "4") as server, server.client(timeout=60) as c:
        parent = c.start(manifest)["id"]
        middle = spawn(c, parent, mid)
        kid = spawn(c, middle, lone)                                     # 3 live: parent, mid, kid
        full = b"has 2 live descendants, as many as its [limits] descendants (2) allows"
        assert c.request(parent, b"S" + probe.name.encode()) == b"error: this actor " + full
        beneath_parent = b"error: its ancestor " + f"parent ({parent}) ".encode() + full
        assert c.request(middle, b"S" + probe.name.encode()) == beneath_parent
        looser = write_probe(tmp_path, "looser", extra="[limits]\ndescendants = 3")
        assert b"descendants = 3: looser than its parent's (2)" in c.request(middle, b"S" + looser.name.encode())

        temporary = c.start(lone)["id"]                                  # 4 live: the server's bound
        one_line_error(server.cli("start", str(lone)), "theater: ",
                       "the server has 4 live actors, as many as it allows (4)", "theater-server --max-actors N",
                       f"[root] max_actors in {home.root}/server.toml", code=7)
        ends(kid)                                                        # 3 live: room beneath the parent
        other = c.start(lone)["id"]
        server_full = "the server has 4 live actors, as many as it allows (4)"
        assert c.request(parent, b"S" + probe.name.encode()).startswith(b"error: " + server_full.encode())
        c.stop(other)                                                    # room in the server again
        spawn(c, parent, probe)
        assert c.request(middle, b"T" + kid.encode()) == beneath_parent  # started again, it would be a 3rd
        ends(temporary)
        other = c.start(lone)["id"]
        with pytest.raises(Refused, match=re.escape(server_full)):
            c.call("restart", actor=temporary)                           # started again, it would be a 5th
        statuses = {a["id"]: a["status"] for a in actors(c)}
        assert (statuses.pop(temporary), statuses.pop(kid)) == ("exited", "exited"), statuses
        assert set(statuses.values()) == {"running"} and len(statuses) == 4, statuses
        spawns = [decode_data(e.data)["output"] for e in c.events(parent, types=["theater:simple/supervisor/spawn"])]
        refusals = [o["err"] for o in spawns if "err" in o]                # the parent's chain holds both
        assert len(refusals) == 2 and refusals[0].endswith(full.decode()), spawns
        assert refusals[1].startswith(server_full), spawns

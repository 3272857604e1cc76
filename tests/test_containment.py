"""Containment: each actor's limits are enforced on it alone, recorded in its chain, and visible.

Wall time (call_timeout), fuel, linear memory, process memory (a cgroup here, or RLIMIT_DATA),
CPU share, event rate and mailbox size; the hardening every worker gets before actor code
runs (no_new_privs, no core, bounded descriptors, umask, clean environment, --user); and the
server's defaults from server.toml. Test actors are the probe (tests/actors/probe.wat, one
opcode byte per message, see tests/actors/README.md) with a manifest written into tmp_path,
and the counter example. Servers with extra flags are started (and killed by pid) here.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from theater import protocol
from theater.errors import TheaterError
from theater.events import decode_data, readable
from theater.paths import Home

from .conftest import ACTORS, EXAMPLES, ROOT, Server, pid_alive, proc_status, send_in_thread, wait_for

COUNTER = EXAMPLES / "counter" / "manifest.toml"
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
MiB = 1 << 20


# --------------------------------------------------------------------------- servers with flags


@pytest.fixture
def flag_server(home: Home) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*flags: str) -> Server:
        s = Server(home, *flags)
        started.append(s)
        return s.start()
    yield start
    for s in started:
        s.stop()


# --------------------------------------------------------------------------- helpers


def probe(tmp_path: Path, name: str, limits: str = "", restart: str = "temporary",
          component: Path = ACTORS / "probe.wat") -> Path:
    """A probe manifest in tmp_path with the given [limits] lines."""
    text = (f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{component}"\n\n'
            '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n'
            f'\n[restart]\ntype = "{restart}"\n')
    if limits:
        text += f"\n[limits]\n{limits}\n"
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def counter_manifest(tmp_path: Path, name: str, limits: str) -> Path:
    """The counter example under another name, with the given [limits] lines."""
    text = COUNTER.read_text().replace('name = "counter"', f'name = "{name}"')
    text = text.replace('component = "counter.wat"', f'component = "{COUNTER.parent / "counter.wat"}"')
    path = tmp_path / f"{name}.toml"
    path.write_text(f"{text}\n[restart]\ntype = \"temporary\"\n\n[limits]\n{limits}\n")
    return path


def start(server: Server, manifest: Path) -> str:
    with server.client() as c:
        return c.start(manifest)["id"]


def request(server: Server, actor: str, message: bytes, timeout: float = 30) -> bytes:
    with server.client(timeout=timeout) as c:
        return c.request(actor, message)


def inspect(server: Server, actor: str) -> dict[str, Any]:
    with server.client() as c:
        return c.inspect(actor)


def events(server: Server, actor: str, types: list[str] | None = None) -> list[dict[str, Any]]:
    """The actor's stored events as {"type", "seq", "time_ns", "body"}."""
    with server.client(timeout=60) as c:
        evs = c.events(actor, types=types)
    return [{"type": e.type, "seq": e.seq, "time_ns": e.time_ns, "body": readable(decode_data(e.data))}
            for e in evs]


def bodies(evs: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e["body"] for e in evs if e["type"] == type_]


def wasm_errors(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["body"] for e in evs if e["type"] == "wasm" and e["body"]["event"] == "error"]


def wait_exit(server: Server, actor: str) -> list[dict[str, Any]]:
    """The actor's events once its lifecycle/exit is stored (the server records it asynchronously)."""
    return wait_for(lambda: (evs := events(server, actor)) and bodies(evs, "lifecycle/exit") and evs,
                    timeout=15, interval=0.1, what=f"the lifecycle/exit of {actor}")


def wait_status(server: Server, actor: str, status: str) -> dict[str, Any]:
    return wait_for(lambda: (i := inspect(server, actor))["status"] == status and i, timeout=15, interval=0.1,
                    what=f"actor {actor} to be {status}")


def worker(server: Server, actor: str) -> psutil.Process:
    pid = inspect(server, actor)["pid"]
    assert pid is not None and pid_alive(pid)
    return psutil.Process(pid)


def proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    """/proc/<pid>/limits as {"Max data size": (soft, hard)}."""
    out = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
        out[name] = (soft, hard)
    return out


def assert_answers(server: Server, counter: str, expect: bytes) -> None:
    assert request(server, counter, b"+1") == expect


# --------------------------------------------------------------------------- 1. wall time


def test_a_start_function_that_never_returns_is_stopped_by_the_call_timeout(server, tmp_path):
    """Instantiation runs wasm too (core start functions): it gets the call time limit."""
    text = (ACTORS / "probe.wat").read_text()
    memory = '    (memory (export "memory") 1)\n'
    assert text.count(memory) == 1
    stuck = tmp_path / "stuck.wat"
    stuck.write_text(text.replace(memory, memory + "    (func $spin (loop br 0))\n    (start $spin)\n"))
    manifest = probe(tmp_path, "stuck", 'call_timeout = "500ms"', component=stuck)
    t0 = time.monotonic()
    with server.client() as c, pytest.raises(TheaterError) as err:
        c.start(manifest)
    assert time.monotonic() - t0 < 10
    assert "instantiation exceeded the call time limit (0.5s)" in str(err.value), err.value


def test_call_timeout_interrupts_an_infinite_loop_and_others_keep_answering(server, tmp_path):
    counter = start(server, COUNTER)
    looper = start(server, probe(tmp_path, "looper", 'call_timeout = "1s"'))
    assert inspect(server, looper)["limits"]["call_timeout"] == 1.0
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(r=server.cli("message", looper, "l", "--request")))
    t.start()
    try:
        # once the loop has begun (its call event is shipped within a watchdog tick), the counter answers
        def looping() -> bool:
            return any(b["event"] == "call" and b["function"].endswith("handle-request")
                       for b in bodies(events(server, looper), "wasm"))
        wait_for(looping, timeout=10, what="the looper's call to start")
        for i in range(1, 4):
            assert_answers(server, counter, str(i).encode())
    finally:
        t.join(30)
    r = result["r"]
    assert r.code != 0, r
    assert r.out == b""
    assert "time limit" in r.err or "timeout" in r.err, r.err

    info = wait_status(server, looper, "failed")
    assert "timeout" in info["last_error"], info["last_error"]
    assert info["last_exit"]["reason"] == "timeout"
    evs = wait_exit(server, looper)
    (error,) = wasm_errors(evs)
    assert error["reason"] == "timeout"
    assert error["function"].endswith("handle-request")
    assert "1s" in error["error"], error
    assert bodies(evs, "lifecycle/exit")[-1]["reason"] == "timeout"

    # the counter's answers were given while the looper was inside its call: between the
    # looper's call event and its error event in time
    call_at = next(e["time_ns"] for e in evs if e["type"] == "wasm" and e["body"]["event"] == "call"
                   and e["body"]["function"].endswith("handle-request"))
    error_at = next(e["time_ns"] for e in evs if e["type"] == "wasm" and e["body"]["event"] == "error")
    answered = [e["time_ns"] for e in events(server, counter)
                if e["type"] == "wasm" and e["body"]["event"] == "result"
                and e["body"]["function"].endswith("handle-request")]
    assert len(answered) == 3
    assert all(call_at < at < error_at for at in answered), (call_at, answered, error_at)
    assert_answers(server, counter, b"4")


# --------------------------------------------------------------------------- 2. fuel


def test_fuel_runs_out_in_a_busy_loop_and_zero_means_off(server, tmp_path):
    fueled = start(server, probe(tmp_path, "fueled", "fuel = 100000"))
    unfueled = start(server, probe(tmp_path, "unfueled", "fuel = 0"))
    assert inspect(server, fueled)["limits"]["fuel"] == 100000
    assert request(server, fueled, b"eok") == b"ok"          # a small call fits in its budget

    with pytest.raises(TheaterError) as e:
        request(server, fueled, b"w5")
    assert "fuel" in e.value.message, e.value.message
    info = wait_status(server, fueled, "failed")
    assert "fuel" in info["last_error"]
    assert info["last_exit"]["reason"] == "fuel"
    evs = wait_exit(server, fueled)
    (error,) = wasm_errors(evs)
    assert error["reason"] == "fuel"
    assert "100000" in error["error"]

    assert request(server, unfueled, b"w5") == b"done"
    assert inspect(server, unfueled)["status"] == "running"


# --------------------------------------------------------------------------- 3. linear memory


def test_linear_memory_limit_refuses_memory_grow_and_the_actor_goes_on(server, tmp_path):
    small = start(server, probe(tmp_path, "small", 'memory = "2MiB"'))
    assert inspect(server, small)["limits"]["memory"] == 2 * MiB
    assert request(server, small, b"g") == b"grow-failed"
    assert request(server, small, b"eok") == b"ok"
    assert request(server, small, b"g") == b"grow-failed"   # again: still at its limit, still alive
    info = inspect(server, small)
    assert info["status"] == "running" and info["last_error"] is None
    assert not wasm_errors(events(server, small))


def test_component_needing_more_linear_memory_than_its_limit_fails_to_start(server, tmp_path):
    """A probe whose memory starts at 4 pages cannot instantiate within 64KiB (one page)."""
    wat = (ACTORS / "probe.wat").read_text()
    assert wat.count('(memory (export "memory") 1)') == 1
    big = tmp_path / "big.wat"
    big.write_text(wat.replace('(memory (export "memory") 1)', '(memory (export "memory") 4)'))
    assert request(server, start(server, probe(tmp_path, "roomy", component=big)), b"eok") == b"ok"

    with pytest.raises(TheaterError) as e:
        start(server, probe(tmp_path, "cramped", 'memory = "64KiB"', component=big))
    msg = e.value.message
    assert "linear memory" in msg and "65536" in msg, msg


# --------------------------------------------------------------------------- 4. process memory


def oom_hog(server: Server, tmp_path: Path, name: str) -> tuple[str, int, Path]:
    """A probe in a 96MiB cgroup whose `g` grows its linear memory (1GiB allowed) past that."""
    hog = start(server, probe(tmp_path, name, 'memory = "1GiB"\nprocess_memory = "96MiB"'))
    info = inspect(server, hog)
    assert info["limits"]["process_memory"] == 96 * MiB
    assert info["enforced"].startswith("cgroup v1"), info["enforced"]
    group = CGROUP_MEMORY / f"theater-{server.pid}" / f"w-{info['pid']}"      # made by the worker itself
    assert group.is_dir(), list(group.parent.iterdir())
    assert int((group / "memory.limit_in_bytes").read_text()) == 96 * MiB
    assert str(info["pid"]) in (group / "cgroup.procs").read_text().split()
    return hog, info["pid"], group


def requests_in(evs: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(event, message) of each handle-request call and result in the chain."""
    return [(e["body"]["event"], e["body"].get("params", [None, None])[1] if e["body"]["event"] == "call"
             else e["body"].get("result")) for e in evs
            if e["type"] == "wasm" and e["body"]["function"].endswith("handle-request")]


def test_process_memory_limit_is_an_oom_kill_recorded_as_such(server, tmp_path):
    hog, pid, group = oom_hog(server, tmp_path, "hog")
    time.sleep(0.05)        # a quiet spell: the next call's event is shipped before wasm runs
    with pytest.raises(TheaterError) as e:
        request(server, hog, b"g")
    assert "oom" in e.value.message, e.value.message
    info = wait_status(server, hog, "failed")
    assert "oom" in info["last_error"], info["last_error"]
    assert "process memory" in info["last_error"]
    assert info["last_exit"]["reason"] == "oom"
    assert info["pid"] is None
    wait_for(lambda: not pid_alive(pid), what="the killed worker to be gone")

    evs = wait_exit(server, hog)
    (ex,) = bodies(evs, "lifecycle/exit")
    assert ex["reason"] == "oom" and ex["kind"] == "abnormal" and ex["action"] == "exited"
    assert evs[-1]["type"] == "lifecycle/exit"
    assert not wasm_errors(evs)          # the kernel gave it no chance to say anything
    # the call it was killed in is in its chain, just before the exit
    assert requests_in(evs) == [("call", {"utf8": "g"})], requests_in(evs)
    assert evs[-2]["type"] == "wasm" and evs[-2]["body"]["event"] == "call"

    wait_for(lambda: not group.exists(), what=f"{group} to be removed")
    v = server.cli("verify", hog)
    assert v.code == 0, v.text + v.err


def pipelined(server: Server, actor: str, *messages: bytes, timeout: float = 30) -> list[tuple[bool, bytes]]:
    """Sends every request before reading any reply (so they reach the worker back to back);
    [(ok, reply or error)] in order."""
    with server.client() as c:
        for i, m in enumerate(messages):
            c.sock.send_multipart(protocol.encode({"k": "request", "id": f"p{i}", "actor": actor}, m))
        got: dict[str, tuple[bool, bytes]] = {}
        while len(got) < len(messages):
            assert c.sock.poll(timeout * 1000), f"no reply within {timeout}s: {got}"
            header, frames = protocol.decode(c.sock.recv_multipart())
            if header.get("re", "").startswith("p"):
                ok = header["k"] == "ok"
                got[header["re"]] = (ok, frames[0] if ok and frames else header.get("error", "").encode())
    return [got[f"p{i}"] for i in range(len(messages))]


def test_an_answered_call_and_the_call_a_worker_is_killed_in_reach_its_chain(server, tmp_path):
    """Back to back: while "w200" keeps the worker busy (~0.1 s), "eok" and "g" queue behind it;
    "eok" is answered, then "g" is OOM-killed. What the actor answered, and the call it died in,
    must both be in its chain, not lost with the process. (A reply leaves the worker only once
    the chain has acknowledged its call's events, so one whose acknowledgement the worker did
    not live to read is answered with the actor's failure instead: never a value the chain lacks.)"""
    hog, _pid, _group = oom_hog(server, tmp_path, "hog2")
    busy, answered, killed = pipelined(server, hog, b"w200", b"eok", b"g")
    for reply, value in ((busy, b"done"), (answered, b"ok")):
        assert reply == (True, value) or (not reply[0] and b"oom" in reply[1]), reply
    assert not killed[0] and b"oom" in killed[1], killed
    evs = wait_exit(server, hog)
    assert bodies(evs, "lifecycle/exit")[0]["reason"] == "oom"
    assert requests_in(evs) == [("call", {"utf8": "w200"}), ("result", [{"utf8": "done"}]),
                                ("call", {"utf8": "eok"}), ("result", [{"utf8": "ok"}]),
                                ("call", {"utf8": "g"})], requests_in(evs)


# --------------------------------------------------------------------------- 5. cpu share


def test_cpu_share_throttles_a_busy_worker(server, tmp_path):
    spinner = start(server, probe(tmp_path, "spinner", "cpu = 0.2"))
    info = inspect(server, spinner)
    assert info["limits"]["cpu"] == 0.2
    group = Path("/sys/fs/cgroup/cpu") / f"theater-{server.pid}" / f"w-{info['pid']}"
    assert int((group / "cpu.cfs_quota_us").read_text()) == 20_000
    assert int((group / "cpu.cfs_period_us").read_text()) == 100_000
    w = worker(server, spinner)

    def cpu() -> float:
        t = w.cpu_times()
        return t.user + t.system
    before = cpu()
    # ~0.5 s of CPU unthrottled here; at 0.2 of a core, ~2.5 s (the send is answered once it ran)
    sent, result = send_in_thread(server, spinner, b"w1000")
    wait_for(lambda: cpu() > before + 0.05, what="the busy loop to start")
    c0, t0 = cpu(), time.monotonic()
    time.sleep(1.0)
    c1, t1 = cpu(), time.monotonic()
    share = (c1 - c0) / (t1 - t0)
    sent.join(180)
    assert result == {"ok": True}
    assert share <= 0.35, f"the worker used {share:.2f} of a core (limit 0.2)"
    assert share > 0.02, f"the worker made no progress ({share:.3f} of a core)"
    wait_for(lambda: request(server, spinner, b"eok") == b"ok", timeout=20, what="the spinner to answer")


# --------------------------------------------------------------------------- 6. event rate


def test_log_spammer_is_throttled_not_killed_and_nothing_is_lost(server, tmp_path):
    counter = start(server, COUNTER)
    spammer = start(server, probe(tmp_path, "spammer", "events_per_second = 2000"))
    result: dict[str, Any] = {}

    def spam() -> None:
        try:
            result["reply"] = request(server, spammer, b"n20000", timeout=120)
        except TheaterError as e:
            result["error"] = e
    t = threading.Thread(target=spam)
    t.start()
    try:
        wait_for(lambda: bodies(events(server, spammer, ["limit/throttled"]), "limit/throttled"), timeout=30,
                 interval=0.2, what="the spammer to be throttled")
        # while it is throttled, the server and other actors answer
        for i in range(1, 4):
            with server.client() as c:
                listed = {a["id"]: a for a in c.call("list")[0]["actors"]}
            assert listed[spammer]["status"] == "running"
            assert_answers(server, counter, str(i).encode())
    finally:
        t.join(120)
    assert result.get("reply") == b"logged", result

    throttled = bodies(events(server, spammer, ["limit/throttled"]), "limit/throttled")
    assert throttled
    assert all(b["delayed_events"] > 0 and b["events_per_second"] == 2000 for b in throttled), throttled
    # its worker slowed itself: the chain's own hold (chain.rates) never kept it waiting
    assert "faster than its limits allow" not in (server.home.logs / "server.log").read_text()

    # every log call is in the chain (plus init's one), and the counter answered before the spam ended
    logs = bodies(events(server, spammer, ["theater:simple/runtime/log"]), "theater:simple/runtime/log")
    assert sum(b["input"] == ["spam"] for b in logs) == 20_000, len(logs)
    assert len(logs) == 20_001 and logs[0]["input"] == ["probe init"]
    spam_done = max(e["time_ns"] for e in events(server, spammer, ["wasm"]) if e["body"]["event"] == "result")
    answered = [e["time_ns"] for e in events(server, counter, ["wasm"]) if e["body"]["event"] == "result"
                and e["body"]["function"].endswith("handle-request")]
    assert len(answered) == 3 and max(answered) < spam_done
    v = server.cli("verify", spammer)
    assert v.code == 0, v.text + v.err
    assert inspect(server, spammer)["status"] == "running"


# --------------------------------------------------------------------------- 7. mailbox


def test_full_mailbox_slows_senders_and_reopens(server, tmp_path):
    """A mailbox of 5 and 2,000 one-way sends as fast as the sender can: the receiver stops
    reading while its mailbox is full and the sender waits for room; nothing is refused or lost
    (the closing request, queued behind every send, sees them all counted), and each full
    episode is recorded when it starts and ends."""
    receiver = start(server, counter_manifest(tmp_path, "receiver", "mailbox = 5"))
    assert inspect(server, receiver)["limits"]["mailbox"] == 5
    sender = start(server, probe(tmp_path, "sender"))
    assert request(server, sender, f"M2000 {receiver}".encode(), timeout=120) == b"2001"

    sent = bodies(events(server, sender), "theater:simple/message-server-host/send")
    assert len(sent) == 2000 and all(b["output"] == {"ok": None} for b in sent), sent[:3]
    assert not bodies(events(server, sender), "limit/refused")
    marks = bodies(events(server, receiver), "limit/mailbox")
    assert marks and marks[0] == {"event": "full", "mailbox": 5}, marks
    assert [m["event"] for m in marks] == ["full", "open"] * (len(marks) // 2), marks
    assert all(m["full_ms"] >= 0 for m in marks if m["event"] == "open")
    for actor in (receiver, sender):
        info = inspect(server, actor)
        assert info["status"] == "running" and info["last_error"] is None, info


def test_top_shows_each_workers_memory_cpu_and_event_rate(server, tmp_path):
    """Rates are measured between two `top` calls: a busy actor shows its CPU, an idle one none."""
    busy = start(server, probe(tmp_path, "busy"))
    idle = start(server, probe(tmp_path, "idle"))

    def top() -> dict[str, dict[str, Any]]:
        r = server.cli("top", "--json")
        assert r.code == 0, r.err
        return {a["id"]: a for a in orjson.loads(r.out)["actors"]}
    first = top()
    assert "cpu_percent" not in first[busy]           # no earlier sample yet
    assert first[busy]["rss"] > first[busy]["uss"] > 0
    worker = psutil.Process(first[busy]["pid"])
    spent = sum(worker.cpu_times()[:2])
    t = threading.Thread(target=lambda: request(server, busy, b"w3000"))
    t.start()
    try:
        # the second sample once the busy worker has burnt CPU since the first (however loaded the host)
        wait_for(lambda: sum(worker.cpu_times()[:2]) - spent > 0.3, timeout=60, what="the busy worker to work")
        second = top()
    finally:
        t.join()
    assert second[busy]["cpu_percent"] > 1, second[busy]
    assert second[idle]["cpu_percent"] < second[busy]["cpu_percent"] / 2, (second[idle], second[busy])
    assert second[busy]["events_per_second"] >= 0 and second[busy]["restarts"] == 0
    r = server.cli("top")
    assert r.code == 0 and "busy" in r.text and "UNIQUE" in r.text, r.err


# --------------------------------------------------------------------------- 8. many actors


def test_a_hundred_actors_answer_and_the_server_stays_small(server):
    ids, pids = [], []
    with server.client(timeout=60) as c:
        for _ in range(100):
            a = c.start(COUNTER)
            ids.append(a["id"])
        for actor in ids:
            assert c.request(actor, b"+1") == b"1"
            pids.append(c.inspect(actor)["pid"])
        assert len(set(pids)) == 100 and all(pid_alive(p) for p in pids)
        server.remember()
        rss = psutil.Process(server.pid).memory_info().rss
        assert rss < 200 * MiB, f"server RSS {rss / MiB:.0f} MiB with 100 actors"
        for actor in ids:
            c.stop(actor)
    wait_for(lambda: not any(pid_alive(p) for p in pids), what="every worker to exit")
    assert not {p.pid for p in server.descendants()} & set(pids)
    parent = CGROUP_MEMORY / f"theater-{server.pid}"
    groups = {f"w-{p}" for p in pids}       # what is left is the spares' own groups
    wait_for(lambda: not [d for d in parent.iterdir() if d.name in groups],
             what=f"the actors' groups under {parent} to go")


# --------------------------------------------------------------------------- 9. rlimits only


@pytest.mark.parametrize("how", ["cgroup-root", "no-cgroups"])
def test_without_a_writable_cgroup_the_worker_limits_itself(flag_server, home, tmp_path, how):
    empty = tmp_path / "no-cgroups-here"
    empty.mkdir()
    flags = ("--cgroup-root", str(empty)) if how == "cgroup-root" else ("--no-cgroups",)
    server = flag_server(*flags)
    why = str(empty) if how == "cgroup-root" else "--no-cgroups"
    with server.client() as c:
        said = c.ping()["limits"]
    assert said.startswith("rlimits only") and why in said, said
    log = (home.logs / "server.log").read_text()
    assert "rlimits only" in log and why in log, server.log_tail()

    # the second runs in a spare the fork server confined ahead (worker.spare): its data limit,
    # per actor, it lowers once assigned
    for name in ("limited", "limited-too"):
        ahead = server.all_spares_confined_ahead() if name == "limited-too" else set()
        actor = start(server, probe(tmp_path, name, 'process_memory = "128MiB"'))
        info = inspect(server, actor)
        assert name == "limited" or info["pid"] in ahead
        assert info["enforced"] == said
        assert request(server, actor, b"eok") == b"ok"
        data = proc_limits(info["pid"])["Max data size"]
        assert data == (str(128 * MiB), str(128 * MiB)), data
    assert not (CGROUP_MEMORY / f"theater-{server.pid}").exists()
    counter = start(server, COUNTER)
    assert_answers(server, counter, b"1")


# --------------------------------------------------------------------------- 10. hardening


def test_worker_is_hardened_before_actor_code_runs(server, home):
    actor = start(server, COUNTER)
    assert_answers(server, actor, b"1")
    pid = inspect(server, actor)["pid"]

    status = proc_status(pid)
    assert status["NoNewPrivs"] == "1"
    assert status["Umask"] == "0077"
    lim = proc_limits(pid)
    assert lim["Max core file size"] == ("0", "0")
    assert lim["Max open files"] == ("1024", "1024")

    # the environment: setproctitle reuses the worker's own environ block for its title, so
    # it is read from the fork server the worker was forked from (and inherited unchanged)
    def environ(p: int) -> dict[str, str]:
        raw = Path(f"/proc/{p}/environ").read_bytes().decode(errors="replace").split("\0")
        return dict(kv.split("=", 1) for kv in raw if "=" in kv)
    zygote = psutil.Process(pid).parent()
    assert zygote is not None and "worker" in zygote.cmdline(), zygote
    for env in (environ(zygote.pid), environ(pid)):
        assert set(env) <= {"PATH", "LANG", "THEATER_HOME", "PYTHONPATH"}, sorted(env)
    assert environ(zygote.pid)["THEATER_HOME"] == str(home.root)

    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    assert f"theater-{server.pid}/w-{pid}" in cgroups, cgroups


def test_worker_holds_none_of_the_servers_files_open(server, home):
    """A worker inherits no descriptor of a file the server holds: not its log, not its lock."""
    server_files = {f.path for f in psutil.Process(server.pid).open_files()}
    assert str(home.logs / "server.log") in server_files, server_files     # what is looked for is real
    actor = start(server, COUNTER)
    pid = inspect(server, actor)["pid"]
    targets = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):       # closed meanwhile
            targets[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
    held = [(fd, t) for fd, t in targets.items()
            if t.startswith(str(home.logs)) or t == str(home.run / "server.lock")]
    assert not held, f"the worker holds the server's files open: {held}"


# --------------------------------------------------------------------------- 11. --user


def test_workers_run_as_the_given_user(flag_server, home, tmp_path):
    nobody = pwd.getpwnam("nobody")
    server = flag_server("--user", "nobody")
    first = start(server, COUNTER)
    assert_answers(server, first, b"1")
    assert_answers(server, first, b"2")
    w = worker(server, first)
    assert set(w.uids()) == {nobody.pw_uid}
    assert set(w.gids()) == {nobody.pw_gid}
    assert proc_status(w.pid)["NoNewPrivs"] == "1"
    # the server itself stays root
    assert psutil.Process(server.pid).uids().real == 0

    # a second actor of the same component loads it from the cache the first one wrote
    second = start(server, COUNTER)
    assert_answers(server, second, b"1")
    starts = [bodies(events(server, a), "lifecycle/start")[0] for a in (first, second)]
    assert [bool(s["compiled"]) for s in starts] == [True, False], starts     # the first waited for a compile
    # the two talk through their inbox sockets
    sender = start(server, probe(tmp_path, "sender"))
    assert request(server, sender, f"q{first}".encode()) == b"3"
    assert worker(server, sender).uids().real == nobody.pw_uid

    # and they die with the server, as root's workers do (a change of user clears the
    # parent-death signal: the worker sets it again)
    workers = [worker(server, a) for a in (first, second, sender)]
    server.remember()           # so that, should they outlive it, the test's end kills them
    server.proc.kill()
    server.proc.wait(30)
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]


# --------------------------------------------------------------------------- 12. server.toml


def test_server_toml_sets_default_limits(flag_server, home, tmp_path):
    home.ensure()
    (home.root / "server.toml").write_text('[limits]\ncall_timeout = "2s"\n')
    server = flag_server()
    default = start(server, probe(tmp_path, "default"))
    own = start(server, probe(tmp_path, "own", 'call_timeout = "5s"'))
    assert inspect(server, default)["limits"]["call_timeout"] == 2.0
    assert inspect(server, own)["limits"]["call_timeout"] == 5.0
    # the others stay at the built-in defaults
    assert inspect(server, default)["limits"]["mailbox"] == 1000


@pytest.mark.parametrize("where", ["home", "--config"])
def test_server_config_with_an_unknown_key_stops_the_server(home, tmp_path, where):
    home.ensure()
    config = home.root / "server.toml" if where == "home" else tmp_path / "elsewhere.toml"
    config.write_text('[limits]\ncall_timout = "2s"\n')
    flags = ["--config", str(config)] if where == "--config" else []
    p = subprocess.run([sys.executable, "-m", "supervisor", "--home", str(home.root), *flags],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30, cwd=ROOT)
    err = p.stderr.decode().strip()
    assert p.returncode != 0
    assert len(err.splitlines()) == 1, err
    assert "call_timout" in err and config.name in err, err
    assert not (home.run / "control.sock").exists()

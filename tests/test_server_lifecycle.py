"""The server's own life: SIGTERM stops everything in order, SIGKILL leaves no orphans, a new
server takes over the home, and `theater stop` ends an actor's process.

The server's processes: the chain (`python -m chain`), the worker fork server (`python -m
worker --home H --fd N`), its spare child, and one worker per actor. Chains are checked
afterwards with the offline commands (verify, export, chains), which need no server.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from .conftest import ACTORS, EXAMPLES, Server, one_line_error, pid_alive, run_cli, run_server, wait_for

GONE_WITHIN = 5.0


def start(server, manifest: Path) -> str:
    r = server.cli("start", str(manifest), "--json")
    assert r.code == 0, r.err
    return orjson.loads(r.out)["id"]


def three_actors(server) -> dict[str, str]:
    """A counter, a pong and a probe, each with a message handled; returns id -> name."""
    actors = {start(server, EXAMPLES / "counter" / "manifest.toml"): "counter",
              start(server, EXAMPLES / "ping-pong" / "pong.toml"): "pong",
              start(server, ACTORS / "probe.toml"): "probe"}
    for actor, name in actors.items():
        msg = {"counter": "+1", "pong": "ping", "probe": "sfoo"}[name]
        assert server.cli("message", actor, msg, "--request").code == 0
    return actors


def processes_of(server, actors: dict[str, str]) -> list[psutil.Process]:
    """The server's descendants, checked to include the chain, the fork server and each worker;
    remembered, so none outlives the test."""
    server.remember()
    procs = server.descendants()
    cmdlines = [" ".join(p.cmdline()) for p in procs]
    assert any("-m chain" in c for c in cmdlines), cmdlines
    assert any("-m worker" in c and "--fd" in c for c in cmdlines), cmdlines
    for actor in actors:
        pid = server.client().inspect(actor)["pid"]
        assert pid in {p.pid for p in procs}, (actor, pid, cmdlines)
    return procs


def wait_gone(procs: list[psutil.Process], started: float) -> None:
    """Every one of ``procs`` exits (and is reaped, or reparented and reaped) within GONE_WITHIN of ``started``."""
    _, alive = psutil.wait_procs(procs, timeout=max(0.1, started + GONE_WITHIN - time.monotonic()))
    alive = [p for p in alive if pid_alive(p.pid)]
    assert not alive, f"still running {time.monotonic() - started:.1f}s after the signal: " + "; ".join(
        f"{p.pid} {' '.join(p.cmdline())}" for p in alive)


def no_process_mentions(home_root: Path) -> None:
    """No process anywhere still runs for this home (catches children forked after the snapshot)."""
    left = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(home_root) in cmd and pid_alive(p.info["pid"]):
            left.append(f"{p.info['pid']} {cmd}")
    assert not left, left


def export(home, actor: str) -> list[dict[str, Any]]:
    r = run_cli(home, "export", actor)
    assert r.code == 0, r.err
    return [orjson.loads(line) for line in r.out.splitlines()]


def verify_offline(home, actors: dict[str, str]) -> None:
    r = run_cli(home, "verify", "--json")
    assert r.code == 0, r.text + r.err
    reports = {x["actor"]: x for x in orjson.loads(r.out)}
    for actor in actors:
        assert reports[actor]["ok"] is True, reports[actor]
        assert reports[actor]["events"] >= 4


def test_sigterm_stops_every_process_and_the_chains_record_the_stop(server):
    actors = three_actors(server)
    procs = processes_of(server, actors)

    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    wait_gone([psutil.Process(server.pid), *procs], t0)
    assert server.proc.wait(1) == 0, server.log_tail()
    no_process_mentions(server.home.root)

    verify_offline(server.home, actors)
    for actor in actors:
        evs = export(server.home, actor)
        assert evs[0]["type"] == "lifecycle/start"
        tail = [e["type"] for e in evs[-2:]]
        assert tail == ["lifecycle/stop", "lifecycle/exit"], (actor, [e["type"] for e in evs])
        ex = evs[-1]["body"]
        assert ex["kind"] == "shutdown", ex
        assert ex["action"] == "stopped", ex
        assert ex["error"] is None
        assert evs[-1]["signature"]                    # the head is signed


def test_sigkill_leaves_no_orphans_and_the_chains_verify(server):
    actors = three_actors(server)
    procs = processes_of(server, actors)

    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(5)
    wait_gone(procs, t0)                    # they notice by themselves: nobody else stops them
    no_process_mentions(server.home.root)

    verify_offline(server.home, actors)
    for actor in actors:
        evs = export(server.home, actor)
        assert evs[0]["type"] == "lifecycle/start"
        assert [e["seq"] for e in evs] == list(range(len(evs)))


def test_workers_die_with_the_server_even_when_their_fork_server_is_stopped(server):
    """Workers die with their fork server, which dies with the server: one that was stopped
    (SIGSTOP, a debugger) when the server died kept them all running, beside a new server's."""
    actors = three_actors(server)
    procs = processes_of(server, actors)
    fork_server = server.fork_server()
    fork_server.suspend()
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(5)
    wait_gone(procs, t0)
    no_process_mentions(server.home.root)


def test_a_new_server_takes_over_the_home_after_sigkill(server):
    actors = three_actors(server)
    procs = processes_of(server, actors)
    before = {c["actor"]: c for c in orjson.loads(run_cli(server.home, "chains", "--json").out)}

    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(5)
    wait_gone(procs, time.monotonic())
    assert (server.home.root / "run" / "theater.sock").exists()        # stale: nobody cleaned up

    second = Server(server.home)
    try:
        second.start()
        listed = orjson.loads(second.cli("chains", "--json").out)
        chains = {c["actor"]: c for c in listed}
        for actor in actors:
            assert actor in chains, (actor, listed)
            assert chains[actor]["length"] >= before[actor]["length"]
        # the old chains are served, and the new server runs actors
        r = second.cli("events", next(iter(actors)), "--json")
        assert r.code == 0, r.err
        assert orjson.loads(r.out)[0]["type"] == "lifecycle/start"
        fresh = start(second, EXAMPLES / "counter" / "manifest.toml")
        assert second.cli("message", fresh, "+1", "--request").out == b"1"
        v = second.cli("verify")
        assert v.code == 0, v.text + v.err
    finally:
        second.stop()


def test_theater_chains_names_each_chains_actor(server):
    actors = three_actors(server)
    r = server.cli("chains", "--json")
    assert r.code == 0, r.err
    names = {c["actor"]: c["name"] for c in orjson.loads(r.out)}
    assert {a: names.get(a) for a in actors} == actors


def test_a_dead_servers_stale_socket_is_reported_as_no_server(server):
    """After a SIGKILL the management socket file stays behind; a client must say "no server"
    (exit 4) at once, not wait out its timeout and report a timeout (exit 6)."""
    server.remember()
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(5)
    t0 = time.monotonic()
    r = run_cli(server.home, "list", "--timeout", "5")
    assert r.code == 4, r
    assert "no theater server" in r.err, r.err
    assert time.monotonic() - t0 < 4


def test_stop_ends_the_worker_process(server):
    counter = start(server, EXAMPLES / "counter" / "manifest.toml")
    probe = start(server, ACTORS / "probe.toml")
    pids = {a: server.client().inspect(a)["pid"] for a in (counter, probe)}
    assert all(pid_alive(p) for p in pids.values())

    r = server.cli("stop", counter)
    assert r.code == 0, r.err
    assert counter in r.text
    wait_for(lambda: not pid_alive(pids[counter]), timeout=GONE_WITHIN, what="the counter's worker to exit")
    assert pid_alive(pids[probe])                     # the other actor is untouched
    assert [a["id"] for a in orjson.loads(server.cli("list", "--json").out)] == [probe]

    r = server.cli("stop", "probe")                    # by name
    assert r.code == 0, r.err
    wait_for(lambda: not pid_alive(pids[probe]), timeout=GONE_WITHIN, what="the probe's worker to exit")
    assert orjson.loads(server.cli("list", "--json").out) == []

    # the chains stay, end with the stop, and verify
    for actor in pids:
        evs = orjson.loads(server.cli("events", actor, "--json").out)
        assert [e["type"] for e in evs[-2:]] == ["lifecycle/stop", "lifecycle/exit"]
    assert server.cli("verify").code == 0
    assert server.cli("message", counter, "+1", "--request").code != 0


def test_a_server_stopped_while_it_starts_stops_cleanly(server):
    """SIGTERM as soon as the server answers, while its fork server is still starting: the fork
    server's answer to a server already gone was a BrokenPipeError traceback in the log."""
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.log_tail()
    log = (server.home.logs / "server.log").read_text()
    assert "Traceback" not in log and "stopped" in log.splitlines()[-1], log[-3000:]


def test_an_actor_that_cannot_be_saved_runs_and_the_log_says_why(server):
    """The record a restarted server brings an actor back from is saved while its worker
    starts; a save that fails leaves the actor running, not half started."""
    shutil.rmtree(server.home.actors)
    server.home.actors.write_bytes(b"")          # a file where the folder was: no save can succeed
    with server.client() as c:
        actor = c.start(EXAMPLES / "counter" / "manifest.toml")["id"]
        assert c.request(actor, b"x") == b"1"
    wait_for(lambda: f"actor {actor}: cannot save it for a server restart" in server.log_tail(), timeout=30,
             what="the server's note")


@pytest.mark.parametrize("damage", ["garbage", "directory"])
def test_a_damaged_chain_store_is_one_line_to_the_cli_and_stops_the_server_at_once(home, damage):
    """Red-team finding: the CLI printed sqlite3's traceback, and the server waited 15 s for a
    chain process that had died at once, then said only "did not start", its log empty."""
    home.ensure()
    if damage == "garbage":
        home.chains_db.write_bytes(b"not a database, not at all " * 200)
    else:
        home.chains_db.mkdir()
    one_line_error(run_cli(home, "chains"), "theater: ", str(home.chains_db), code=1)
    r = run_server("--home", str(home.root), "--log-level", "warning")
    assert r.code != 0 and "Traceback" not in r.err, r.err
    assert "the chain process exited (status 1) before it started: chain: " in r.err and "chains.db" in r.err, r.err


def test_a_directory_where_the_servers_socket_goes_is_one_line(home):
    """Red-team finding: an IsADirectoryError traceback."""
    home.ensure()
    home.management_socket.mkdir(parents=True)
    one_line_error(run_server("--home", str(home.root)), "theater-server: ", str(home.management_socket),
                   "cannot put the server's socket there: Is a directory")


def test_an_actor_saved_under_looser_rules_is_restored(server):
    """Review finding: names that now read as id prefixes ("cafe") and a process_memory under
    16MiB are refused to new starts; an actor a server saved before that rule must still come
    back after an upgrade (it was dropped with an error in the log)."""
    actor = start(server, EXAMPLES / "counter" / "manifest.toml")
    assert server.cli("message", actor, "+1", "--request").out == b"1"
    server.stop()
    saved = server.home.actors / f"{actor}.json"
    doc = orjson.loads(saved.read_bytes())
    doc["manifest"] = (doc["manifest"].replace('name = "counter"', 'name = "cafe"')
                       + '\n[limits]\nprocess_memory = "12MiB"\n')
    saved.write_bytes(orjson.dumps(doc))
    again = Server(server.home)
    try:
        again.start()
        wait_for(lambda: orjson.loads(again.cli("inspect", actor, "--json").out).get("status") == "running",
                 what="the saved actor to be restored")
        assert again.cli("state", "cafe").out == b"1"
        fresh = again.home.root / "cafe.toml"          # a new start under that name is refused
        fresh.write_text((EXAMPLES / "counter" / "manifest.toml").read_text()
                         .replace('name = "counter"', 'name = "cafe"')
                         .replace('"counter.wat"', f'"{EXAMPLES / "counter" / "counter.wat"}"'))
        one_line_error(again.cli("start", str(fresh)), "theater: ", "reads as an actor id", code=2)
    finally:
        again.stop()

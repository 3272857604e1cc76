"""Actors that fail: a trap or an Err fails the actor alone; restart types decide what follows.

The probe actor (tests/actors/probe.wat) fails on request: "t" traps (unreachable), "x..."
returns Err, "z..." calls shutdown. Each test writes its own manifest into tmp_path, pointing
at probe.wat by absolute path, with the [restart] type it needs.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import orjson

from .conftest import ACTORS, EXAMPLES, pid_alive, wait_for
from .conftest import cli_events as events
from .conftest import cli_start as start


def probe_manifest(tmp_path: Path, restart: str | None = None) -> Path:
    text = (f'name = "probe"\nversion = "0.1.0"\ncomponent = "{ACTORS / "probe.wat"}"\n\n'
            '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n')
    if restart is not None:
        text += f'\n[restart]\ntype = "{restart}"\n'
    path = tmp_path / f"probe-{restart or 'default'}.toml"
    path.write_text(text)
    return path


def listed(server, actor: str) -> dict[str, Any] | None:
    r = server.cli("list", "--json")
    assert r.code == 0, r.err
    return next((a for a in orjson.loads(r.out) if a["id"] == actor), None)


def inspect(server, actor: str) -> dict[str, Any]:
    r = server.cli("inspect", actor, "--json")
    assert r.code == 0, r.err
    return orjson.loads(r.out)


def wait_status(server, actor: str, status: str) -> dict[str, Any]:
    return wait_for(lambda: (a := listed(server, actor)) is not None and a["status"] == status and a,
                    timeout=15, interval=0.2, what=f"actor {actor} to be {status}")


def exits(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["body"] for e in evs if e["type"] == "lifecycle/exit"]


def wasm_errors(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["body"] for e in evs if e["type"] == "wasm" and e["body"]["event"] == "error"]


def events_with_exit(server, actor: str) -> list[dict[str, Any]]:
    """The actor's events, once its lifecycle/exit is among them (the server records it asynchronously)."""
    return wait_for(lambda: (evs := events(server, actor)) and exits(evs) and evs, interval=0.2,
                    what=f"the lifecycle/exit event of {actor}")


def assert_server_still_works(server, counter: str, expect: bytes) -> None:
    r = server.cli("message", counter, "+1", "--request")
    assert (r.code, r.out) == (0, expect), r.err
    assert server.client().ping()
    assert listed(server, counter)["status"] == "running"


def _failed_alone(server, tmp_path: Path, message: str,
                  says: tuple[str, ...]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A counter, then a temporary probe that fails on ``message``: checks what every failure shares.
    The failed request's error must mention one of ``says``."""
    counter = start(server, EXAMPLES / "counter" / "manifest.toml")
    assert server.cli("message", counter, "+1", "--request").out == b"1"
    probe = start(server, probe_manifest(tmp_path, "temporary"))
    pid = server.client().inspect(probe)["pid"]
    assert pid_alive(pid)

    r = server.cli("message", probe, message, "--request")
    assert r.code != 0, r
    assert r.out == b""
    assert any(w in r.err.lower() for w in says), r.err

    entry = wait_status(server, probe, "failed")
    assert entry["pid"] is None and entry["restarts"] == 0
    assert entry["last_error"]
    info = inspect(server, probe)
    assert info["status"] == "failed"
    assert info["pid"] is None
    assert info["restarts"] == 0
    assert info["last_error"] == entry["last_error"]
    assert info["last_exit"]["kind"] == "abnormal"
    wait_for(lambda: not pid_alive(pid), what="the failed actor's worker to exit")

    evs = events_with_exit(server, probe)
    (ex,) = exits(evs)
    assert ex["kind"] == "abnormal"
    assert ex["action"] == "exited"              # temporary: never restarted
    assert evs[-1]["type"] == "lifecycle/exit"
    v = server.cli("verify", probe)
    assert v.code == 0, v.text + v.err

    # a failed temporary actor takes no more messages
    assert server.cli("message", probe, "eping", "--request").code != 0

    # the failure was this actor's alone
    assert_server_still_works(server, counter, b"2")
    other = start(server, probe_manifest(tmp_path, "temporary"))
    assert server.cli("message", other, "eok", "--request").out == b"ok"
    return info, evs


def test_trap_fails_only_that_actor(server, tmp_path):
    info, evs = _failed_alone(server, tmp_path, "t", ("trap", "unreachable"))
    err = info["last_error"].lower()
    assert "trap" in err or "unreachable" in err, info["last_error"]
    assert info["last_exit"]["reason"] == "trap"

    (error,) = wasm_errors(evs)
    assert error["function"].endswith("handle-request")
    assert error["reason"] == "trap"
    assert exits(evs)[0]["reason"] == "trap"


def test_trap_message_names_the_cause(server, tmp_path):
    """The recorded error of a trap says what trapped, not just wasmtime's first line
    ("error while executing at wasm backtrace:"), which is the same for every trap."""
    probe = start(server, probe_manifest(tmp_path, "temporary"))
    r = server.cli("message", probe, "t", "--request")
    assert r.code != 0
    wait_status(server, probe, "failed")
    evs = events_with_exit(server, probe)
    (error,) = wasm_errors(evs)
    assert "unreachable" in error["error"], error
    assert "unreachable" in inspect(server, probe)["last_error"]


def test_err_result_fails_only_that_actor(server, tmp_path):
    info, evs = _failed_alone(server, tmp_path, "xboom", ("boom", "error"))
    assert "boom" in info["last_error"], info["last_error"]
    assert info["last_exit"]["error"] == "boom"

    (error,) = wasm_errors(evs)
    assert error["function"].endswith("handle-request")
    assert error["error"] == "boom"
    (ex,) = exits(evs)
    assert ex["error"] == "boom"


def test_permanent_actor_restarts_with_its_last_state(server, tmp_path):
    probe = start(server, probe_manifest(tmp_path))         # no [restart]: permanent
    assert inspect(server, probe)["restart"]["type"] == "permanent"
    assert server.cli("message", probe, "sfoo", "--request").out == b"ok"
    pid = server.client().inspect(probe)["pid"]

    r = server.cli("message", probe, "t", "--request")
    assert r.code != 0

    def back() -> dict[str, Any] | None:
        a = listed(server, probe)
        return a if a and a["status"] == "running" and a["restarts"] == 1 and a["pid"] not in (None, pid) else None
    entry = wait_for(back, timeout=15, interval=0.2, what="the actor to be restarted")
    assert "trap" in entry["last_error"].lower() or "unreachable" in entry["last_error"].lower()
    assert pid_alive(entry["pid"])
    wait_for(lambda: not pid_alive(pid), what="the old worker to exit")

    s = server.cli("state", probe)
    assert (s.code, s.out) == (0, b"foo"), s.err
    r = server.cli("message", probe, "ehello", "--request")
    assert (r.code, r.out) == (0, b"hello"), r.err

    evs = events(server, probe)
    (ex,) = exits(evs)
    assert ex["kind"] == "abnormal" and ex["action"] == "restart"
    starts = [e["body"] for e in evs if e["type"] == "lifecycle/start"]
    assert len(starts) == 2
    assert starts[1]["mode"] == "resume" and starts[1]["state"] == {"utf8": "foo"}
    v = server.cli("verify", probe)
    assert v.code == 0, v.text + v.err


def test_shutdown_ends_a_temporary_actor_normally(server, tmp_path):
    probe = start(server, probe_manifest(tmp_path, "temporary"))
    pid = server.client().inspect(probe)["pid"]

    r = server.cli("message", probe, "zbye-data", "--request")
    assert (r.code, r.out) == (0, b"bye"), r.err

    entry = wait_status(server, probe, "exited")
    assert entry["pid"] is None
    assert entry["last_error"] is None
    assert entry["restarts"] == 0
    wait_for(lambda: not pid_alive(pid), what="the worker to exit")

    evs = events_with_exit(server, probe)
    (ex,) = exits(evs)
    assert ex["kind"] == "normal"
    assert ex["data"] == {"utf8": "bye-data"}
    assert ex["action"] == "exited"
    shutdowns = [e["body"] for e in evs if e["type"] == "theater:simple/runtime/shutdown"]
    assert shutdowns == [{"input": [{"utf8": "bye-data"}], "output": {"ok": None}}]
    assert not wasm_errors(evs)
    assert inspect(server, probe)["last_exit"]["kind"] == "normal"


def test_a_worker_that_goes_silent_is_killed_as_hung_and_restarted(server, tmp_path):
    """A stopped process sends no heartbeats: once it has been silent for its call timeout
    plus the server's grace (hangs.HANG_GRACE, 10 s), the server kills it, records the
    exit as a hang, and the restart policy brings the actor back with its state."""
    manifest = probe_manifest(tmp_path)
    manifest.write_text(manifest.read_text() + '\n[limits]\ncall_timeout = "1s"\n')
    probe = start(server, manifest)
    assert server.cli("message", probe, "skept", "--request").out == b"ok"
    pid = server.client().inspect(probe)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        def back() -> dict[str, Any] | None:
            a = listed(server, probe)
            return a if a and a["status"] == "running" and a["pid"] not in (None, pid) else None
        entry = wait_for(back, timeout=40, interval=0.5, what="the hung actor to be restarted")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert entry["restarts"] == 1
    assert "hang" in entry["last_error"], entry
    assert inspect(server, probe)["last_exit"]["reason"] == "hang"
    wait_for(lambda: not pid_alive(pid), what="the hung worker to be gone")
    assert server.cli("state", probe).out == b"kept"
    (ex,) = exits(events(server, probe))
    assert ex["kind"] == "abnormal" and ex["reason"] == "hang" and ex["action"] == "restart"

"""The operator-facing bugs of issue 12, each through the real CLI and a real server.

Ctrl-C during `theater run` on a fresh home; a failed `theater start` that left a ghost;
tracebacks for a home that is a file or read-only and for an export to a missing folder;
compile errors that lost wasmtime's cause and WAT errors that said ``<anon>``; names that
only worked for running actors; a one-way message that vanished; JSON output with wire
fields; and the channel example's README, run as written.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from theater._wasm_errors import compile_error
from theater.paths import Home

from .conftest import ACTORS, EXAMPLES, ROOT, Server, cli_start, kill_all, pid_alive, run_cli, running, wait_for
from .test_bad_input import one_line

COUNTER = EXAMPLES / "counter" / "manifest.toml"
HELLO = EXAMPLES / "hello"


@pytest.mark.timeout(300)
def test_ctrl_c_during_run_on_a_fresh_home_stops_the_actor_and_leaves_no_ghost(home):
    """Ctrl-C reaches the whole foreground process group. The embedded server got it too and
    stopped under the CLI, whose stop of the actor then waited ~60 s for an answer, and the
    actor stayed saved in actors/: every later `theater run` brought it back."""
    run = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(home.root), "run", str(COUNTER)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True)
    started: set[int] = set()
    try:
        first = run.stderr.readline().decode() if run.stderr else ""
        assert first.startswith("[theater] started counter") and "Ctrl-C stops it" in first, first
        started = {p.pid for p in psutil.Process(run.pid).children(recursive=True)}
        # how to reach it from a terminal without this one's THEATER_HOME: said, and true
        how = run.stderr.readline().decode().rstrip("\n") if run.stderr else ""
        said = how.removeprefix("[theater] message it from another terminal: ")
        assert said != how and said.startswith("theater --home "), how
        words = [sys.executable, "-m", *shlex.split(said.replace("TEXT", "+1"))]
        env = {k: v for k, v in os.environ.items() if k != "THEATER_HOME"}
        assert subprocess.run(words, capture_output=True, cwd=ROOT, env=env, timeout=60).stdout == b"1", how
        os.killpg(run.pid, signal.SIGINT)                 # what the terminal does on Ctrl-C
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        kill_all(started)
    assert run.returncode == 130, err
    assert "Traceback" not in err.decode(), err
    wait_for(lambda: not any(pid_alive(p) for p in started), timeout=30,
             what="the embedded server and its helpers to end")
    assert not list(home.actors.glob("*.json")), "the interrupted run's actor is saved: a ghost"
    (chain,) = orjson.loads(run_cli(home, "chains", "--json").out)
    events = orjson.loads(run_cli(home, "events", chain["actor"], "--json").out)
    assert events[-1]["type"] == "lifecycle/exit" and events[-1]["body"]["reason"] == "stopped by request", \
        events[-1]                                        # stopped by the CLI, not by a dying server


def test_a_start_that_fails_leaves_no_actor_behind(module_server, tmp_path):
    """A start that fails prints no id; the actor it would have been must not stay listed (as
    failed), saved (retried at each server start), or make its name ambiguous."""
    server = module_server
    saved = set(server.home.actors.glob("*.json"))
    one_line(server.cli("start", str(ACTORS / "bad_import.toml")), "theater:simple/supervisor", code=2)
    manifest = tmp_path / "failing.toml"
    manifest.write_text((ACTORS / "probe.toml").read_text().replace('name = "probe"', 'name = "failing"')
                        .replace('"probe.wat"', f'"{ACTORS / "probe.wat"}"'))
    state = tmp_path / "fail"
    state.write_bytes(b"fail-init")
    r = server.cli("start", str(manifest), "--state", str(state))
    assert r.code != 0 and not r.out, (r.code, r.out, r.err)
    listed = orjson.loads(server.cli("list", "--json").out)
    assert not [a for a in listed if a["name"] in ("bad-import", "failing")], listed
    assert set(server.home.actors.glob("*.json")) == saved
    cli_start(server, manifest)
    r = server.cli("message", "failing", "e", "--request")           # the name is this actor's alone
    assert (r.code, r.out) == (0, b""), r.err


def test_a_home_that_is_a_file_or_read_only_is_one_line(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    for args in (("run", str(COUNTER)), ("list",), ("events", "x"), ("key",)):
        r = run_cli(Home(not_a_dir), *args)
        one_line(r, f"--home {not_a_dir} is a file, not a directory", code=2)
    r = run_cli(Home(not_a_dir / "sub"), "run", str(COUNTER))
    one_line(r, str(not_a_dir), "Not a directory", code=2)
    with _read_only(tmp_path / "ro") as ro:
        one_line(run_cli(Home(ro), "run", str(COUNTER)), f"cannot make a home at {ro}", "read-only", code=2)


def test_a_home_that_is_read_only_stops_the_embedded_server_with_its_reason(home):
    home.ensure()
    with _read_only(home.root, bind=True):
        r = run_cli(home, "run", str(COUNTER))
    one_line(r, "the embedded server did not start", "ead-only file system", code=2)


@contextlib.contextmanager
def _read_only(path: Path, bind: bool = False) -> Iterator[Path]:
    """``path`` read-only: an empty tmpfs mounted there, or (``bind``) the folder itself."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root: mounts a read-only file system")
    path.mkdir(exist_ok=True)
    if bind:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
    else:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_an_export_to_a_missing_folder_is_one_line(module_server):
    server = module_server
    counter = cli_start(server, COUNTER)
    one_line(server.cli("export", counter, "-o", "/nonexistent/dir/x.jsonl"),
             "cannot write /nonexistent/dir/x.jsonl", "No such file or directory", code=2)


def test_compile_errors_keep_the_cause_and_wat_errors_name_the_file(module_server, tmp_path):
    server = module_server
    wat = (HELLO / "hello.wat").read_text()
    manifest = (HELLO / "manifest.toml").read_text()
    broken = {"typeerr": wat.replace("(global.set $bump (i32.const 4096))))", "(global.set $bump (i64.const 4096))))"),
              "syntax": wat.replace("(core instance $libc (instantiate $libc))", "(core instance $libc (oops)) )")}
    for name, text in broken.items():
        assert text != wat
        (tmp_path / f"{name}.wat").write_text(text)
        (tmp_path / f"{name}.toml").write_text(manifest.replace("hello.wat", f"{name}.wat"))
    one_line(server.cli("start", str(tmp_path / "typeerr.toml")), "failed to compile",
             "type mismatch: expected i32, found i64", code=2)
    line = one_line(server.cli("start", str(tmp_path / "syntax.toml")), "is not valid WAT", code=2)
    assert re.search(rf"{re.escape(str(tmp_path / 'syntax.wat'))}:\d+:\d+: ", line), line
    assert "<anon>" not in line, line


def test_a_cause_over_several_lines_is_kept_whole():
    """Red-team finding: a component with flipped bytes was refused as 'failed to parse
    WebAssembly module: ] (at offset 0x3f)', the last line of a two-line cause."""
    text = ("failed to parse WebAssembly module\n\nCaused by:\n    expected one of: `component`, `module`\n"
            "    ] (at offset 0x3f)\n")
    assert compile_error(text) == ("failed to parse WebAssembly module: expected one of: `component`, `module` ] "
                                   "(at offset 0x3f)")
    chain = "failed to compile: f[1]\n\nCaused by:\n    0: failed\n    1: type mismatch\n       at 810\n"
    assert compile_error(chain) == "failed to compile: f[1]: type mismatch at 810"


def test_stopped_actors_and_stored_chains_are_known_by_name(server, tmp_path):
    counter = cli_start(server, COUNTER)
    assert server.cli("message", "counter", "+1", "--request").out == b"1"
    assert server.cli("stop", "counter").code == 0
    for args in (("events", "counter"), ("state", "counter"), ("verify", "counter"), ("inspect", "counter"),
                 ("export", "counter", "-o", str(tmp_path / "c.jsonl")), ("replay", "counter"),
                 ("logs", "counter"), ("chain", "head", "counter")):
        r = server.cli(*args)
        assert r.code == 0, (args, r.err)
        assert counter in r.text or args[0] in ("state", "events", "logs", "export", "replay"), (args, r.text)
    assert server.cli("state", "counter").out == b"1"
    assert orjson.loads(server.cli("inspect", "counter", "--json").out)["id"] == counter
    # following a stopped actor's log waits for lines that may never come: it says so
    follower = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "logs", counter,
                                 "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert follower.stderr is not None
        assert select.select([follower.stderr], [], [], 60)[0], "nothing said within 60 s"
        said = follower.stderr.readline().decode()
        assert f"actor {counter} is stopped: waiting for new lines" in said and follower.poll() is None, said
    finally:
        kill_all({follower.pid})
        follower.wait()
    again = cli_start(server, COUNTER)
    assert server.cli("stop", again).code == 0
    for args in (("events", "counter"), ("inspect", "counter"), ("export", "counter")):
        one_line(server.cli(*args), "'counter' names 2 actors", counter[:8], again[:8], code=2)
    server.stop()                              # and with no server: the store is read directly
    one_line(run_cli(server.home, "events", "counter"), "'counter' names 2 actors", code=2)
    assert run_cli(server.home, "events", counter[:8]).code == 0
    assert run_cli(server.home, "state", counter[:8]).out == b"1"      # (it said no server was running)
    one_line(run_cli(server.home, "state", "counter"), "'counter' names 2 actors", code=2)


def test_a_name_two_running_actors_share_says_so(module_server, tmp_path):
    """The server's registry said "not found" (or picked nothing) for a shared name."""
    server = module_server
    manifest = tmp_path / "twin.toml"
    manifest.write_text(COUNTER.read_text().replace('name = "counter"', 'name = "twin"')
                        .replace('"counter.wat"', f'"{COUNTER.parent / "counter.wat"}"'))
    twins = [cli_start(server, manifest) for _ in range(2)]
    one_line(server.cli("message", "twin", "+1", "--request"), "'twin' names 2 actors", *(t[:8] for t in twins),
             code=2)


def test_a_message_an_actor_cannot_take_is_refused_not_lost(module_server, tmp_path):
    """handlers.wat exports handle-request only: a one-way message was handed to its worker,
    dropped there with nobody to tell, and `theater message` exited 0."""
    server = module_server
    manifest = tmp_path / "handlers.toml"
    manifest.write_text(f'name = "handlers"\nversion = "0.1.0"\ncomponent = "{ACTORS / "handlers.wat"}"\n'
                        + "".join(f'[[handler]]\ntype = "{t}"\n' for t in
                                  ("runtime", "message-server", "timing", "random", "environment"))
                        + f'[[handler]]\ntype = "filesystem"\npath = "{tmp_path}"\n')
    cli_start(server, manifest)
    one_line(server.cli("message", "handlers", "hi"), "takes no one-way messages",
             "message-server-client.handle-send", code=7)
    one_line(server.cli("message", "counter-that-is-not", "hi"), code=3)
    counter = cli_start(server, COUNTER)
    assert server.cli("message", counter, "+1").code == 0          # one that takes it still does


def test_a_message_takes_its_options_before_or_after_its_data(module_server):
    """`theater message ID --request DATA` was refused ("unrecognized arguments: DATA"): argparse
    gives the optional DATA nothing once an option stands between it and ID. ``--`` still ends
    the options, for DATA that starts with "-"; --file - still reads stdin."""
    server = module_server
    probe = cli_start(server, ACTORS / "probe.toml")
    for args, reply in (((probe, "ehello", "--request"), b"hello"), ((probe, "--request", "ehello"), b"hello"),
                        (("--request", probe, "ehello"), b"hello"), ((probe, "--json", "--request", "ehi"), b"hi"),
                        ((probe, "--request", "--", "e-x"), b"-x"), ((probe, "--", "e-x"), b"")):
        r = server.cli("message", *args)
        assert r.code == 0 and reply in r.out, (args, r)
    assert server.cli("message", probe, "--request", "--file", "-", input=b"estdin").out == b"stdin"
    one_line(server.cli("message", probe, "--request", "-x"), "unrecognized arguments: -x", code=2)
    one_line(server.cli("message", probe, "--request", "ea", "eb"), "unrecognized arguments: eb", code=2)


def test_json_output_carries_no_wire_fields(module_server):
    server = module_server
    counter = cli_start(server, COUNTER)
    top = orjson.loads(server.cli("top", "--json").out)
    assert set(top) == {"actors", "server"}, top
    restarted = orjson.loads(server.cli("restart", counter, "--json").out)
    assert set(restarted) == {"id", "name", "pid"}, restarted
    stopped = orjson.loads(server.cli("stop", counter, "--json").out)
    assert stopped == {"id": counter, "status": "stopped"}, stopped
    assert orjson.loads(server.cli("prune", "--json").out) == []


def test_the_channel_examples_readme_says_what_it_does(module_server):
    server = module_server
    readme = (EXAMPLES / "channel" / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("theater ")]
    echo = cli_start(server, EXAMPLES / "channel" / "echo.toml")
    cli_start(server, EXAMPLES / "channel" / "opener.toml")
    r = server.cli("message", "opener", echo, "--request")
    assert r.code == 0 and re.fullmatch(rb"ch_[0-9a-f]{16}", r.out), (r.out, r.err)
    checked = 0
    for line in commands:
        command, _, said = line.partition("#")
        args = command.split()[1:]
        if args[0] not in ("logs", "events"):
            continue
        want = re.findall(r'"([^"]*)"', said) if args[0] == "logs" else re.findall(r"'([^']*)'", said)

        def shown(args: list[str] = args, want: list[str] = want) -> bool:
            text = server.cli(*args).text
            return all(w.removesuffix("...") in text for w in want)
        wait_for(shown, timeout=30, what=f"{line!r} to show {want}")
        checked += len(want)
    assert checked >= 6, commands


def test_a_restored_actor_that_fails_to_start_stays_listed_for_prune(home):
    """Only new actors are forgotten when their first start fails: one a previous server ran
    is listed as failed at restore (its operator knows its id), and `theater prune` forgets it."""
    server = Server(home).start()
    try:
        probe = cli_start(server, ACTORS / "probe.toml")
        assert server.cli("message", probe, "sfail-init", "--request").out == b"ok"   # its init will refuse
    finally:
        server.stop()
    saved = home.actors / f"{probe}.json"
    assert saved.exists()
    server = Server(home).start()
    try:
        wait_for(lambda: [a["status"] for a in orjson.loads(server.cli("list", "--json").out)] == ["failed"],
                 timeout=60, what="the restored actor to fail")
        assert saved.exists()
        pruned = orjson.loads(server.cli("prune", "--json").out)
        assert [p["id"] for p in pruned] == [probe]
        assert orjson.loads(server.cli("list", "--json").out) == [] and not saved.exists()
    finally:
        server.stop()


def test_actors_that_had_ended_come_back_as_they_ended(home, tmp_path):
    """A job done is not done again by the next server: an actor that had exited (or failed
    for good) is listed as it ended, with its last error, and not run, until someone restarts
    it (then it comes back running, at the next server too) or prunes it. The next server had
    run them all again and forgotten their errors."""
    def probe(name: str, restart: str) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text((ACTORS / "probe.toml").read_text().replace('component = "probe.wat"',
                        f'component = "{ACTORS / "probe.wat"}"').replace('name = "probe"', f'name = "{name}"')
                        + f'\n[restart]\ntype = "{restart}"\n')
        return path

    with running(home) as server:
        done, broken, kept = (cli_start(server, probe(n, t)) for n, t in
                              (("done", "transient"), ("broken", "temporary"), ("kept", "permanent")))
        assert server.cli("message", done, "zfinished", "--request").code == 0
        server.cli("message", broken, "t", "--request")
        with server.client() as c:
            wait_for(lambda: (c.inspect(done)["status"], c.inspect(broken)["status"]) == ("exited", "failed"),
                     timeout=30, what="the two to end")
            before = {a: c.inspect(a) for a in (done, broken)}
            assert "trap" in before[broken]["last_error"], before
    with running(home) as server, server.client() as c:
        wait_for(lambda: c.inspect(kept)["status"] == "running", timeout=60, what="the running one back")
        for actor, status in ((done, "exited"), (broken, "failed")):
            now = c.inspect(actor)
            assert (now["status"], now["pid"], now["last_error"]) == (status, None, before[actor]["last_error"])
            assert now["last_exit"] == before[actor]["last_exit"], (now, before[actor])
            starts = [e for e in c.events(actor) if e.type == "lifecycle/start"]
            assert len(starts) == 1, starts         # not run again
        assert orjson.loads(server.cli("restart", done, "--json").out)["pid"]
        pruned = orjson.loads(server.cli("prune", "--json").out)
        assert [p["id"] for p in pruned] == [broken]
    with running(home) as server, server.client() as c:
        wait_for(lambda: c.inspect(done)["status"] == "running", timeout=60, what="the restarted one back")
        assert sorted(a["id"] for a in c.call("list")[0]["actors"]) == sorted([done, kept])


def test_an_actor_whose_saved_end_cannot_be_read_starts_and_the_others_too(home):
    """A saved actor whose ``ended`` was edited into nonsense stopped the whole server's start
    (an exception out of the restore); it is logged and the actor starts, as before it ended."""
    with running(home) as server:
        probe = cli_start(server, ACTORS / "probe.toml")
        other = cli_start(server, ACTORS / "probe.toml")
    saved = home.actors / f"{probe}.json"
    saved.write_bytes(orjson.dumps({**orjson.loads(saved.read_bytes()), "ended": {"status": "asleep"}}))
    with running(home) as server, server.client() as c:
        wait_for(lambda: {c.inspect(a)["status"] for a in (probe, other)} == {"running"}, timeout=60,
                 what="both to be back")
        assert "how it ended cannot be read" in (home.logs / "server.log").read_text()

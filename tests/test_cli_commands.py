"""The commands an operator expects (issue 12, Build 5), through the real CLI and a real server:
--version, logs, restart, prune, events --tail/--type/times, top, inspect (running and
stopped), completion, colour and newlines on a terminal; bad input to each new option is
one line and a non-zero exit.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from theater import __version__

from .conftest import ACTORS, EXAMPLES, ROOT, cli_start, run_cli, wait_for
from .test_bad_input import one_line

COUNTER = EXAMPLES / "counter" / "manifest.toml"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"


def probe_named(tmp_path: Path, name: str, extra: str = "") -> Path:
    """The probe actor under its own name (tests share a server), with ``extra`` manifest tables."""
    manifest = tmp_path / f"{name}.toml"
    manifest.write_text((ACTORS / "probe.toml").read_text().replace('name = "probe"', f'name = "{name}"')
                        .replace('"probe.wat"', f'"{ACTORS / "probe.wat"}"') + extra)
    return manifest


def on_a_terminal(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Runs the CLI with its stdout on a pseudo-terminal; its exit status and what it showed."""
    main, sub = pty.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(home), *args], stdout=sub,
                             stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "TERM": "xterm", **(env or {})})
        os.close(sub)
        shown = b""
        while True:
            ready, _, _ = select.select([main], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(main, 65536)
            except OSError:         # the other end closed (Linux reports EIO)
                break
            if not chunk:
                break
            shown += chunk
        return p.wait(60), shown
    finally:
        os.close(main)


def test_version():
    r = subprocess.run([sys.executable, "-m", "theater", "--version"], capture_output=True, cwd=ROOT)
    assert (r.returncode, r.stdout.decode().strip()) == (0, f"theater {__version__}")


def test_logs_show_lines_with_times_tail_and_follow(module_server, tmp_path):
    server = module_server
    probe = cli_start(server, probe_named(tmp_path, "logger"))
    for word in ("one", "two", "three"):
        assert server.cli("message", probe, f"o{word}", "--request").out == b"logged"
    r = server.cli("logs", "logger")
    assert r.code == 0, r.err
    lines = r.text.splitlines()
    assert all(re.match(f"{STAMP}  ", line) for line in lines), lines             # each with its time
    assert [re.sub(f"^{STAMP}  ", "", line) for line in lines] == ["probe init", "one", "two", "three"], lines
    assert server.cli("logs", probe, "--tail", "2").text.splitlines()[-2:] == lines[-2:]
    assert len(server.cli("logs", probe, "--tail", "2").text.splitlines()) == 2
    (last,) = [orjson.loads(x) for x in server.cli("logs", probe, "--tail", "1", "--json").out.splitlines()]
    assert last["line"] == "three" and last["stream"] == "log" and re.fullmatch(STAMP, last["time"]), last

    follow = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "logs", probe,
                               "-f", "--tail", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=ROOT)
    try:
        assert follow.stdout is not None
        assert orjson.loads(follow.stdout.readline())["line"] == "three"
        assert server.cli("message", probe, "ofour", "--request").out == b"logged"
        assert orjson.loads(follow.stdout.readline())["line"] == "four"
    finally:
        follow.kill()
        follow.wait()
    assert server.cli("stop", probe).code == 0
    assert server.cli("logs", "logger", "--tail", "1").text.endswith("four\n")        # a stopped actor's too
    one_line(server.cli("logs", probe, "--tail", "0"), "--tail", code=2)
    one_line(server.cli("logs", probe, "--tail", "x"), "--tail", code=2)
    one_line(server.cli("logs", "nosuchactor"), "nosuchactor", code=3)


def test_events_tail_types_and_times(module_server):
    server = module_server
    counter = cli_start(server, COUNTER)
    for _ in range(3):
        server.cli("message", counter, "+1", "--request")
    every = orjson.loads(server.cli("events", counter, "--json").out)
    tail = orjson.loads(server.cli("events", counter, "--tail", "2", "--json").out)
    assert tail == every[-2:]
    logs = orjson.loads(server.cli("events", counter, "--type", "log", "--json").out)
    assert [e["type"] for e in logs] == ["theater:simple/runtime/log"]
    globbed = orjson.loads(server.cli("events", counter, "--type", "lifecycle/*", "--type", "wasm", "--json").out)
    assert globbed and {e["type"] for e in globbed} == {"lifecycle/start", "wasm"}
    assert orjson.loads(server.cli("events", counter, "--type", "wasm", "--tail", "1", "--json").out) == \
        [e for e in every if e["type"] == "wasm"][-1:]
    text = server.cli("events", counter, "--tail", "1").text
    assert re.match(rf"\s*{every[-1]['seq']}  {STAMP}  wasm ", text), text
    one_line(server.cli("events", counter, "--tail", "2", "--since", "1"), "--tail", "--since", code=2)
    one_line(server.cli("events", counter, "--tail", "2", "--limit", "1"), "--tail", "--limit", code=2)
    one_line(server.cli("events", counter, "--tail", "-1"), "--tail", code=2)
    one_line(server.cli("events", counter, "--type", ""), "--type", code=2)
    typo = server.cli("events", counter, "--type", "lgo", "--type", "wasm-cal", "--json")
    assert (typo.code, orjson.loads(typo.out)) == (0, [])               # nothing matches: not an error
    assert typo.err.strip() == ("theater: no stored event matches --type lgo --type wasm-cal "
                                "(types: `theater events ACTOR`; matching: --help)")
    assert "from 2 matches --type lgo" in server.cli("events", counter, "--type", "lgo", "--since", "2").err
    assert server.cli("events", counter, "--type", "log").err == ""    # something found: nothing said


def test_restart_resumes_its_state_and_starts_a_failed_actor_again(module_server, tmp_path):
    server = module_server
    probe = cli_start(server, probe_named(tmp_path, "restarted"))
    assert server.cli("message", probe, "skept", "--request").out == b"ok"
    r = server.cli("restart", "restarted")
    assert (r.code, r.text.strip()) == (0, probe), r.err
    info = orjson.loads(server.cli("inspect", probe, "--json").out)
    assert (info["status"], info["restarts"], info["incarnation"]) == ("running", 1, 2), info
    assert server.cli("state", probe).out == b"kept"

    once = cli_start(server, probe_named(tmp_path, "once", '\n[restart]\ntype = "temporary"\n'))
    server.cli("message", once, "t", "--request")
    wait_for(lambda: orjson.loads(server.cli("inspect", once, "--json").out)["status"] == "failed",
             what="the temporary probe to fail")
    assert server.cli("restart", once).code == 0
    assert orjson.loads(server.cli("inspect", once, "--json").out)["status"] == "running"
    one_line(server.cli("restart", "nosuchactor"), "nosuchactor", code=3)


def test_prune_forgets_failed_and_exited_actors(module_server, tmp_path):
    server = module_server
    doomed = cli_start(server, probe_named(tmp_path, "doomed", '\n[restart]\ntype = "temporary"\n'))
    counter = cli_start(server, COUNTER)
    server.cli("message", doomed, "t", "--request")
    wait_for(lambda: orjson.loads(server.cli("inspect", doomed, "--json").out)["status"] == "failed",
             what="the temporary probe to fail")
    assert (server.home.actors / f"{doomed}.json").exists()
    r = server.cli("prune")
    assert r.code == 0 and doomed in r.text, r.err
    listed = [a["id"] for a in orjson.loads(server.cli("list", "--json").out)]
    assert doomed not in listed and counter in listed, listed
    assert not (server.home.actors / f"{doomed}.json").exists()
    assert server.cli("events", doomed).code == 0                      # its chain stays
    assert "nothing to prune" in server.cli("prune").text


def test_a_name_is_never_read_as_another_actors_id_prefix(server, tmp_path):
    """Red-team finding: the chain's lookup tried id prefixes (of any length) before names, the
    server's names before 4-character prefixes: a stopped actor named like the start of another's
    id showed that other actor's state, events and chain, and a 2-character prefix of a running
    actor's id was "not running" to one command and unknown to the next. Now no name reads as
    an id prefix, and every command takes a prefix of 4 characters at least."""
    other = cli_start(server, COUNTER)
    manifest = tmp_path / "named.toml"
    for name, why in ((other[:4], "reads as an actor id or the start of one"),
                      ("a\\u0000b", "only printable characters")):
        manifest.write_text(COUNTER.read_text().replace('name = "counter"', f'name = "{name}"'))
        one_line(server.cli("start", str(manifest)), "name = ", why, code=2)
    for command in ("state", "inspect", "events", "stop", "message"):
        r = server.cli(command, other[:2], *(["+1"] if command == "message" else []))
        assert r.code == 3 and f"{other[:2]!r}" in r.err, (command, r.code, r.err)
    assert orjson.loads(server.cli("inspect", other[:4], "--json").out)["id"] == other


def test_top_shows_cpu_and_rates_on_the_first_screen_in_human_units(module_server):
    server = module_server
    counter = cli_start(server, COUNTER)
    r = server.cli("top")
    assert r.code == 0, r.err
    header, *rows = r.text.splitlines()
    (row,) = [row for row in rows if row.startswith(counter[:8])]
    cols = dict(zip(header.split(), row.split(), strict=False))
    assert cols["CPU"].endswith("%") and cols["EVENTS/S"] != "-", r.text
    assert re.search(r"\d+(\.\d)? (MiB|KiB)", row), row



def test_top_watch_into_a_pipe_parts_its_screens_with_a_blank_line_not_escape_codes(module_server):
    """`theater top --watch | less` (or into a file) got a terminal's clear-screen codes."""
    server = module_server
    cli_start(server, COUNTER)
    p = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "top", "--watch",
                          "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    assert p.stdout is not None
    out = b""
    try:
        while out.count(b"NAME") < 3 and select.select([p.stdout], [], [], 60)[0]:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    finally:
        p.kill()
        p.wait()
    assert out.count(b"NAME") >= 3 and out.startswith(b"ID"), out
    assert b"\x1b" not in out and out.count(b"\n\nID ") >= 2, out

def test_inspect_shows_limits_and_describes_stopped_and_saved_actors(server, tmp_path):
    manifest = tmp_path / "counter.toml"
    manifest.write_text((EXAMPLES / "counter" / "manifest.toml").read_text()
                        .replace('"counter.wat"', f'"{EXAMPLES / "counter" / "counter.wat"}"')
                        + '\n[limits]\nmemory = "32MiB"\ncall_timeout = "250ms"\n')
    counter = cli_start(server, manifest)
    text = server.cli("inspect", counter).text
    assert re.search(r"^limits: +memory 32MiB, .*call timeout 250ms", text, re.M), text
    server.stop()                      # saved for the next server: described from its manifest
    r = run_cli(server.home, "inspect", "counter")
    assert r.code == 0, r.err
    assert re.search(r"^limits: +memory 32MiB", r.text, re.M) and "saved" in r.text, r.text
    info = orjson.loads(run_cli(server.home, "inspect", counter, "--json").out)
    assert (info["running"], info["id"], info["limits"]["memory"]) == (False, counter, 32 << 20), info
    server.start()
    wait_for(lambda: orjson.loads(server.cli("inspect", counter, "--json").out)["status"] == "running",
             what="the counter to be back")
    assert server.cli("stop", counter).code == 0
    info = orjson.loads(server.cli("inspect", "counter", "--json").out)
    assert (info["status"], info["last_exit"]["reason"], info["running"]) == ("stopped", "stopped by request",
                                                                              False), info
    one_line(server.cli("inspect", "nosuchactor"), "nosuchactor", code=3)


def test_completion_scripts(tmp_path):
    for shell in ("bash", "zsh", "fish"):
        r = run_cli_plain("completion", shell)
        assert r.returncode == 0 and b"theater" in r.stdout, r.stderr
    r = run_cli_plain("completion", "tcsh")
    assert r.returncode == 2 and len(r.stderr.decode().strip().splitlines()) == 1, r.stderr
    if not shutil.which("bash"):
        pytest.skip("no bash to run the bash script with")
    script = tmp_path / "theater.bash"
    script.write_bytes(run_cli_plain("completion", "bash").stdout)
    probe = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _theater; '
             'printf "%s\\n" "${COMPREPLY[@]}"')

    def complete(*words: str) -> list[str]:
        out = subprocess.run(["bash", "-c", probe, "_", str(script), *words], capture_output=True, check=True,
                             cwd=tmp_path)
        return out.stdout.decode().split()
    assert complete("theater", "ev") == ["events"]
    assert complete("theater", "--home", "/tmp", "lo") == ["logs"]
    assert "--tail" in complete("theater", "logs", "x", "--t")
    assert complete("theater", "chain", "") == ["head"]
    assert complete("theater", "chain", "head", "") == ["theater.bash"]      # an actor, or a file: not "head"
    assert complete("theater", "completion", "") == ["bash", "fish", "zsh"]


def run_cli_plain(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "theater", *args], capture_output=True, cwd=ROOT)


def test_colour_on_a_terminal_only_and_newlines_after_bytes(module_server):
    server = module_server
    counter = cli_start(server, COUNTER)
    code, shown = on_a_terminal(server.home.root, "list")
    assert code == 0 and b"\x1b[32mrunning" in shown, shown
    code, shown = on_a_terminal(server.home.root, "list", env={"NO_COLOR": "1"})
    assert code == 0 and b"\x1b[" not in shown and b"running" in shown, shown
    assert b"\x1b[" not in server.cli("list").out
    code, shown = on_a_terminal(server.home.root, "message", counter, "+1", "--request")
    assert (code, shown) == (0, b"1\r\n")                       # a newline after the reply, on a terminal
    assert server.cli("message", counter, "+1", "--request").out == b"2"      # raw bytes into a pipe
    code, shown = on_a_terminal(server.home.root, "state", counter)
    assert (code, shown) == (0, b"2\r\n")
    hello = str(EXAMPLES / "hello" / "manifest.toml")           # a run's result (its shutdown data) too
    code, shown = on_a_terminal(server.home.root, "run", hello)
    assert (code, shown) == (0, b"done\r\n")
    assert server.cli("run", hello).out == b"done"

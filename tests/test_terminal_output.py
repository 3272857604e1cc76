"""Actor-controlled text reaches the operator's terminal escaped (issue 16, finding 8).

A probe logs and fails with ``\\x1b]0;pwned\\x07\\x1b[2J`` (retitle the terminal, clear it), and
so does a child (a manifest may not take it as a name: names are printable text). Every
human-readable output (`run`, `events`, `list`, `inspect`, `tree`, errors, and `state` on a
terminal) shows the control characters as escapes; `--json` output and `state` into a pipe
keep the exact text.
"""

from __future__ import annotations

import ast
import os
import pty
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import orjson
import pytest

from theater.errors import TheaterError

from .conftest import ACTORS, ROOT, Server, wait_for

EVIL = "\x1b]0;pwned\x07\x1b[2J\u202e\x9b31m"
ESCAPED = "\\x1b]0;pwned\\x07\\x1b[2J\\u202e\\x9b31m"
RAW = ("\x1b", "\x07", "\u202e", "\x9b")
TOML_EVIL = "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in EVIL)


def clean(text: str) -> None:
    for c in RAW:
        assert c not in text, (c, text)


def test_actor_text_is_escaped_for_humans_and_exact_in_json(server: Server, tmp_path: Path):
    for name in ("probe.wat", "parent.wat"):
        shutil.copy(ACTORS / name, tmp_path / name)
    probe = tmp_path / "probe.toml"
    probe.write_text((ACTORS / "probe.toml").read_text() + '\n[restart]\ntype = "temporary"\n')
    run = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "run", str(probe)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        def started() -> str | None:
            actors = orjson.loads(server.cli("list", "--json").out)
            return next((a["id"] for a in actors if a["name"] == "probe" and a["status"] == "running"), None)
        actor = wait_for(started, timeout=30, what="the probe of `theater run` to be running")
        with server.client() as c:
            assert c.request(actor, b"o" + EVIL.encode()) == b"logged"
            with pytest.raises(TheaterError):
                c.request(actor, b"x" + EVIL.encode())
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    text = err.decode()
    assert run.returncode == 1, text
    clean(text)
    assert f"[probe] {ESCAPED}" in text, text                  # the log line
    assert f"actor probe failed: {ESCAPED}" in text, text      # its error

    r = server.cli("events", actor)
    assert r.code == 0, r.err
    clean(r.text)
    assert ESCAPED in r.text, r.text
    events = orjson.loads(server.cli("events", actor, "--json").out)
    assert any(e["body"].get("error") == EVIL for e in events if e["type"] == "wasm"), events
    assert any(e["body"].get("input") == [EVIL] for e in events if e["type"].endswith("/log")), events

    # a child its parent (an actor) names with that text is refused (a name is printable text);
    # one failing with it and restarted: `tree`, `list` and `inspect` show its last error escaped
    with server.client() as c:
        parent = c.start(shutil.copy(ACTORS / "parent.toml", tmp_path / "parent.toml"))["id"]
        kid_toml = ('name = "kid{}"\nversion = "0.1.0"\n'
                    'component = "probe.wat"\n[[handler]]\ntype = "runtime"\n[[handler]]\ntype = "message-server"\n')
        refused = c.request(parent, b"S" + kid_toml.format(TOML_EVIL).encode()).decode()
        assert refused.startswith("error: ") and "only printable characters" in refused, refused
        kid = c.request(parent, b"S" + kid_toml.format("").encode()).decode()
        assert not kid.startswith("error"), kid
        with pytest.raises(TheaterError):
            c.request(kid, b"x" + EVIL.encode())
        wait_for(lambda: (i := c.inspect(kid))["status"] == "running" and i["restarts"] == 1,   # one snapshot
                 what="the child to be restarted")
        assert c.request(kid, b"s" + EVIL.encode()) == b"ok"
    for cmd in (("tree",), ("list",), ("inspect", kid)):
        r = server.cli(*cmd)
        assert r.code == 0, r.err
        clean(r.text)
        assert ESCAPED in r.text, (cmd, r.text)
    assert orjson.loads(server.cli("inspect", kid, "--json").out)["last_error"].endswith(EVIL)

    # state: exact bytes into a pipe, escaped on a terminal
    assert server.cli("state", kid).out == EVIL.encode()
    main, sub = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "theater", "--home", str(server.home.root), "state", kid],
                           stdout=sub, stderr=subprocess.PIPE, timeout=60, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        shown = os.read(main, 4096).decode()
    finally:
        os.close(main)
        os.close(sub)
    clean(shown)
    assert ESCAPED in shown, shown


def test_the_cli_prints_only_through_its_output_helper():
    """One helper escapes for every human output path: the command modules never print directly."""
    for path in (ROOT / "theater" / "cli").glob("*.py"):
        if path.name != "_output.py":
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    call = ast.unparse(node.func)
                    assert call not in ("print", "sys.stdout.write", "sys.stderr.write"), \
                        f"{path.name}:{node.lineno} calls {call}(...): print through theater.cli._output"


def test_table_columns_line_up_on_screen_with_wide_and_combining_characters(capsys):
    """A name in CJK (two columns a character), with combining accents or Thai vowel signs, or
    a zero-width space (none) is padded by the columns it takes on a terminal, not by its
    length, so the next column lines up."""
    from theater.cli import _output

    _output.table([["日本語の名前", "running"], ["cafe\u0301", "stopped"], ["plain-name", "failed"],
                   ["\u0e01\u0e31\u200bthai", "exited"]], ["NAME", "STATUS"])
    lines = capsys.readouterr().out.splitlines()

    def columns(text: str) -> int:
        return sum(0 if unicodedata.category(c) in ("Mn", "Cf") else 2 if unicodedata.east_asian_width(c) == "W"
                   else 1 for c in text)
    starts = {columns(line.rpartition("  ")[0]) for line in lines}
    assert len(lines) == 5 and len(starts) == 1, lines

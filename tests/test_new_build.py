"""``theater new`` and ``theater build``: a ready project in Python or WAT, built and run.

The Python project is built with componentize-py by ``theater build`` itself; the component
is cached (tests/toolchains.py) under the SHA-256 of the project's Python and WIT, the actor
helper, theater/wit and the tool's version, so a session rebuilds only when one of those
changed. The first start of each component compiles it (~40 s here): these tests are slow the
first time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from theater import manifest
from theater.cli import main
from theater.paths import Home

from .conftest import ROOT, one_line_error, run_cli, wait_for
from .test_guests import world_of
from .toolchains import built_project, precompiled

GUEST = ROOT / "theater" / "guest"
WIT = ROOT / "theater" / "wit"


def new(home: Home, where: Path, *args: str) -> Path:
    r = run_cli(home, "new", str(where), *args)
    assert r.code == 0, r.err
    return where


def built(project: Path, *flags: str) -> Path:
    """``theater build PROJECT FLAGS``, or the same output from the cache; the component's path."""
    target = project / f"{project.name}.wasm"
    shutil.copyfile(built_project(project, *flags), target)
    return target


def test_new_writes_a_project_for_the_handlers_asked(home, tmp_path):
    project = new(home, tmp_path / "agent", "--handler", "http-client", "--handler", "store",
                  "--handler", "supervisor")
    m = manifest.load(project / "manifest.toml")
    assert m.name == "agent" and m.component == "agent.wasm"
    assert [h.type for h in m.handlers] == ["runtime", "message-server", "http-client", "store", "supervisor"]
    world = (project / "wit" / "world.wit").read_text()
    for line in ("world agent {", "import theater:simple/http-client;", "import theater:simple/store;",
                 "import theater:simple/supervisor;", "export theater:simple/supervisor-handlers;",
                 "export theater:simple/message-server-client;"):
        assert line in world, world
    assert sorted(p.name for p in (project / "wit" / "deps" / "theater-simple").iterdir()) == \
        sorted(p.name for p in WIT.glob("*.wit"))
    app = (project / "app.py").read_text()
    compile(app, "app.py", "exec")          # valid Python, every export present
    for export in ("def init", "def handle_send", "def handle_request", "def handle_channel_open",
                   "def handle_channel_message", "def handle_channel_close", "def handle_child_error",
                   "def handle_child_exit", "def handle_child_external_stop"):
        assert export in app, export
    assert "theater build" in (project / "README.md").read_text()


def test_new_and_build_refuse_bad_input_in_one_line(home, tmp_path):
    one_line_error(run_cli(home, "new", str(tmp_path / "Bad_Name")), "theater: NAME 'Bad_Name'", "lowercase")
    one_line_error(run_cli(home, "new", str(tmp_path / "x"), "--handler", "teleport"), "theater: --handler",
                   "teleport", "http-client")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("")
    one_line_error(run_cli(home, "new", str(tmp_path / "taken")), "theater:", "not an empty folder")
    assert not (tmp_path / "taken" / "manifest.toml").exists()
    one_line_error(run_cli(home, "build", str(tmp_path / "nowhere")), "theater:", "no such manifest file")
    copied = new(home, tmp_path / "copied")            # a copy of examples/agent, whose WIT is a relative link
    deps = copied / "wit" / "deps" / "theater-simple"
    shutil.rmtree(deps)
    deps.symlink_to("../../../../theater/wit")
    one_line_error(run_cli(home, "build", str(copied)), "theater:", str(deps), "../../../../theater/wit",
                   "not there", str(WIT))
    unbuilt = new(home, tmp_path / "unbuilt")          # `theater new`, then `theater start`: the build skipped
    one_line_error(run_cli(home, "start", str(unbuilt / "manifest.toml")), "theater:", "'unbuilt.wasm'",
                   "not built yet", f"`theater build {unbuilt}`")
    project = new(home, tmp_path / "broken", "--lang", "wat")
    wat = project / "broken.wat"
    wat.write_text(wat.read_text().replace("(component", "(compnent", 1))
    one_line_error(run_cli(home, "build", str(project)), "theater:", "broken.wat", "not valid WAT")


BAD_WIT = "package bad:x;\ninterface i {\n  f: func() -> nope;\n}\n"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("file, mistake, shown, error", [
    ("app.py", "def broken(:\n", ['File "{p}/app.py", line 1', "def broken(:", "^"],
     "SyntaxError: invalid syntax (app.py, line 1)"),
    ("app.py", "import no_such_module_here\n", ['File "{p}/app.py", line 1, in <module>', "import no_such_module_here"],
     "ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("wit/deps/bad/x.wit", BAD_WIT, ["--> {p}/wit/deps/bad/x.wit:3:16", "3 |   f: func() -> nope;", "^---"],
     "name `nope` is not defined ({p}/wit/deps/bad/x.wit:3:16)"),
], ids=["syntax", "import", "wit"])
def test_a_mistake_in_the_actor_is_shown_where_it_is_not_as_the_tools_traceback(home, tmp_path, file, mistake,
                                                                                shown, error):
    """What componentize-py's CPython said about the user's code, or where in their WIT the
    innermost cause is, with the user's paths (not its /0/ mount), and that error as theater's
    last line; not the componentize-py script's traceback, the outer causes nor its Rust
    backtrace (RUST_BACKTRACE=1 is common in developers' shells)."""
    project = new(home, tmp_path / "oops")
    where = project / file
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(mistake + (where.read_text() if where.exists() else ""))
    r = run_cli(home, "build", str(project), env={**os.environ, "RUST_BACKTRACE": "1"}, timeout=240)
    assert r.code == 1, r.err
    p = project.resolve()
    lines = r.err.strip().splitlines()
    assert lines[-1] == f"theater: building oops.wasm failed: {error.format(p=p)}", r.err
    assert all(s.format(p=p) in r.err for s in shown), r.err
    for noise in ("componentize-py\", line", "AssertionError", "Caused by", "Stack backtrace", "/0/",
                  "failed to parse"):
        assert noise not in r.err, r.err
    assert not (project / "oops.wasm").exists()


def test_build_without_componentize_py_says_how_to_get_it(home, tmp_path, monkeypatch, capsys):
    """In-process, with componentize-py hidden: not beside the interpreter, not on PATH, not importable."""
    project = new(home, tmp_path / "hello")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "componentize_py" else real(name, *a))
    assert main(["--home", str(home.root), "build", str(project)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "componentize-py is not installed" in err, err
    assert "pip install 'theater[python]'" in err, err


def test_a_wat_project_is_checked_and_runs(server, tmp_path):
    project = new(server.home, tmp_path / "echo", "--lang", "wat")
    r = server.cli("build", str(project))
    assert r.code == 0 and "valid WAT" in r.err, r.err
    r = server.cli("start", str(project / "manifest.toml"))
    assert r.code == 0, r.err
    r = server.cli("message", "echo", "ping", "--request")
    assert r.code == 0 and r.out == b"ping", (r.out, r.err)


@pytest.mark.timeout(1800)      # on a cache miss: componentize-py (~1 min), then Cranelift (~40 s)
def test_new_build_run_a_python_actor(server, tmp_path):
    """`theater new hello --lang python && theater build hello && theater run hello/manifest.toml`,
    then a request from another `theater` while it runs, and Ctrl-C."""
    project = new(server.home, tmp_path / "hello", "--lang", "python")
    r = server.cli("build", str(project), "--dry-run")
    assert r.code == 0 and " componentize " in r.text and str(GUEST) in r.text and "--stub-wasi" not in r.text, r.text
    precompiled(server.home, built(project))
    err = tmp_path / "run.err"
    with open(err, "wb") as f:
        run = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "run",
                                str(project / "manifest.toml")], stdout=subprocess.PIPE, stderr=f, cwd=ROOT)
    try:
        wait_for(lambda: "[hello] hello " in err.read_text() or run.poll() is not None, timeout=600, interval=0.5,
                 what="the actor's first log line")
        assert run.poll() is None, err.read_text()
        r = server.cli("message", "hello", "world", "--request")
        assert r.code == 0 and r.out == b"hello, world", (r.out, r.err)
        assert server.cli("state", "hello").out == b'{"requests":1}'
    finally:
        run.send_signal(signal.SIGINT)
        code = run.wait(60)
    assert code == 130, err.read_text()
    assert server.cli("list", "--json").out.count(b'"hello"') == 0


@pytest.mark.timeout(1800)
def test_the_python_template_builds_without_wasi_too(home, tmp_path, wasm_tools):
    """--no-wasi: a component importing theater:simple alone (the run above shows the template
    works; starting this one too would only add a ~40 s compile)."""
    project = new(home, tmp_path / "quiet")
    imports, exports = world_of(wasm_tools, built(project, "--no-wasi"))
    assert imports == {"theater:simple/runtime", "theater:simple/message-server-host", "theater:simple/types"}
    assert {"theater:simple/actor", "theater:simple/message-server-client"} <= exports

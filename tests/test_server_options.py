"""theater-server's own options and what an operator runs into first: --version, a --config that
is not there, a --home that is a file, and a normal stop that must not look like a problem."""

from __future__ import annotations

import signal

import pytest

from theater import __version__

from .conftest import EXAMPLES, Server, cli_start, one_line_error, run_server, wait_for

COUNTER = EXAMPLES / "counter" / "manifest.toml"


def test_version():
    r = run_server("--version")
    assert (r.code, r.text.strip()) == (0, f"theater-server {__version__}"), r.err


def test_a_missing_config_is_refused_not_ignored(home, tmp_path):
    missing = tmp_path / "missing.toml"
    one_line_error(run_server("--home", str(home.root), "--config", str(missing)), "theater-server: ",
                   f"--config {missing}: no such file")
    assert not (home.run / "server.json").exists()            # nothing started
    one_line_error(run_server("--home", str(home.root), "--config", str(tmp_path)), "theater-server: ",
                   f"--config {tmp_path}: a directory, not a file")


@pytest.mark.parametrize("given", ["0", "many", "²"])
def test_a_bad_max_actors_is_one_line(home, given):
    one_line_error(run_server("--home", str(home.root), "--max-actors", given), "theater-server: ",
                   f"--max-actors {given}: expected a whole number of actors from 1 to")
    assert not (home.run / "server.json").exists()


@pytest.mark.parametrize("args, needle", [
    (["--log-level", "verbose"], "--log-level: invalid choice: 'verbose'"),
    (["--lisen", "tcp://127.0.0.1:0"], "unrecognized arguments: --lisen"),
    (["--max-actors"], "--max-actors: expected one argument"),
    (["unit", "--usr", "x"], "unrecognized arguments: --usr"),
])
def test_a_usage_error_is_one_line_not_the_whole_usage(home, args, needle):
    """As docs/operations.md says of every option; argparse's own printed eight lines of usage first."""
    prog = "theater-server unit" if args[0] == "unit" else "theater-server"
    one_line_error(run_server(*args, "--home", str(home.root)), f"{prog}: ", needle, f"`{prog} --help`")
    assert not (home.run / "server.json").exists()


def test_a_home_that_is_a_file_is_said_in_words(tmp_path):
    afile = tmp_path / "home"
    afile.write_text("")
    line = one_line_error(run_server("--home", str(afile)), "theater-server: ", str(afile), "is a file")
    assert "Errno" not in line
    (tmp_path / "h2").mkdir()
    (tmp_path / "h2" / "run").write_text("")                 # a file where a folder of the layout goes
    one_line_error(run_server("--home", str(tmp_path / "h2")), "theater-server: ", str(tmp_path / "h2" / "run"),
                   "not a directory")


def test_a_normal_stop_is_not_logged_as_a_problem(home):
    """Every stop used to log `WARNING ... the server did not acknowledge why this worker ends`: the
    worker's wait for that acknowledgement was cut short by the very SIGTERM that stopped it."""
    server = Server(home).start()
    log = home.logs / "server.log"
    try:
        stopped, kept = cli_start(server, COUNTER), cli_start(server, COUNTER)
        assert server.cli("stop", stopped).code == 0                     # `theater stop`
        wait_for(lambda: f"actor {stopped} (counter) exited: shutdown" in log.read_text(), what="its exit")
        server.proc.send_signal(signal.SIGTERM)                          # the server's own stop
        assert server.proc.wait(30) == 0
    finally:
        server.stop()
    text = log.read_text()
    assert f"actor {kept} (counter) exited: shutdown server stopping" in text
    assert "did not acknowledge" not in text and "WARNING" not in text, text

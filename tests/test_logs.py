"""The server's log: journald's form on a journal stdout, plain lines elsewhere, the file reopened
on SIGHUP (logrotate) with every process's lines following it, and a log that cannot be
written (a full disk) costing one line on stderr, never the server."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from supervisor.logs import LogSink

from .conftest import ACTORS, EXAMPLES, OpsServer, cli_start, one_line_error, run_server, wait_for

COUNTER = EXAMPLES / "counter" / "manifest.toml"
PROBE = ACTORS / "probe.toml"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def journal_env(server: OpsServer) -> dict[str, str]:
    """$JOURNAL_STREAM naming the file the server's stdout will be (as systemd names its stream)."""
    server.out.mkdir(exist_ok=True)
    (server.out / "stdout").touch()
    st = os.stat(server.out / "stdout")
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def exercise(server: OpsServer) -> None:
    """A counter that answers, and a probe whose error spans lines and pretends to be an emergency."""
    counter = cli_start(server, COUNTER)
    assert server.cli("message", counter, "+1", "--request").out == b"1"
    probe = cli_start(server, PROBE)
    server.cli("message", probe, "xboom\n<0>forged emergency", "--request")
    server.cli("stop", counter)


def test_journal_lines_carry_priorities_and_no_timestamps(home):
    server = OpsServer(home, "--log-stdout")
    server.env.update(journal_env(server))
    server.start()
    try:
        exercise(server)
        wait_for(lambda: "forged emergency" in server.stdout and "counter started" in server.stdout,
                 what="the server's, the chain's and a worker's lines")
    finally:
        server.stop()
    lines = server.stdout.splitlines()
    unprefixed = [line for line in lines if not re.match(r"<[3-7]>", line)]
    assert lines and not unprefixed, unprefixed
    assert not any(TIMESTAMP.search(line) for line in lines), lines[:5]
    assert any(line.startswith("<6>theater.chain: ") for line in lines)            # relayed from the chain
    assert any(line.startswith("<7>theater.worker: ") for line in lines)           # ... and from a worker
    forged = [line for line in lines if "forged emergency" in line]
    assert forged and all(line.startswith(("<6>", "<7>")) for line in forged), forged
    assert not (home.logs / "server.log").exists()


def test_plain_lines_when_stdout_is_not_the_journal(home):
    server = OpsServer(home, "--log-stdout", env={"JOURNAL_STREAM": "1:1"}).start()
    try:
        cli_start(server, COUNTER)
        wait_for(lambda: "counter started" in server.stdout, what="a worker's line")
        # a trap's message is the actor's text: it reaches the log escaped, on its own line
        probe = cli_start(server, PROBE)
        server.cli("message", probe, "x\x1b]0;pwned\x07boom\nfake line", "--request")
        wait_for(lambda: "fake line" in server.stdout, timeout=60, what="the probe's failure in the log")
    finally:
        server.stop()
    lines = [line for line in server.stdout.splitlines() if line.strip()]
    # a record's own lines after its first are indented: none starts without a timestamp
    assert all(TIMESTAMP.match(line) or line.startswith("    ") for line in lines), lines[:5]
    assert not any(re.match(r"<\d>", line) for line in lines)
    assert "\x1b" not in server.stdout and "\x07" not in server.stdout
    assert "\\x1b]0;pwned\\x07boom\n    fake line" in server.stdout, lines[-10:]


def test_sighup_reopens_the_log_and_every_process_follows(server, home):
    log = home.logs / "server.log"
    rotated = home.logs / "server.log.1"
    wait_for(lambda: "ready" in log.read_text(), what="the server ready")
    os.rename(log, rotated)                       # what logrotate does
    os.kill(server.pid, signal.SIGHUP)
    wait_for(lambda: log.exists() and "log reopened" in log.read_text(), what="the new log file")
    before = rotated.stat().st_size

    actor = cli_start(server, COUNTER)           # a worker's lines, the server's own and the chain's
    assert server.cli("message", actor, "+1", "--request").out == b"1"
    assert server.cli("stop", actor).code == 0
    wait_for(lambda: f"actor {actor} (counter) exited" in log.read_text(), what="the exit in the new log")
    text = log.read_text()
    assert "counter started" in text                             # relayed from the worker
    assert rotated.stat().st_size == before, rotated.read_text()[-2000:]
    assert server.proc.poll() is None


def test_sighup_with_stdout_logging_is_harmless(home):
    server = OpsServer(home, "--log-stdout").start()
    try:
        wait_for(lambda: "ready" in server.stdout, what="the server ready")
        os.kill(server.pid, signal.SIGHUP)
        wait_for(lambda: "nothing to reopen" in server.stdout, what="the SIGHUP noted")
        cli_start(server, COUNTER)
    finally:
        server.stop()


def test_a_log_that_cannot_be_written_costs_one_line_not_the_server(home):
    """The log on a full disk (/dev/full: every write fails with ENOSPC)."""
    home.ensure()
    (home.logs / "server.log").symlink_to("/dev/full")
    server = OpsServer(home).start()
    try:
        exercise(server)
        actor = cli_start(server, COUNTER)
        assert server.cli("message", actor, "+1", "--request").out == b"1"
        assert server.proc.poll() is None
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.stderr
    err = server.stderr
    assert "Traceback" not in err and "Logging error" not in err, err[:3000]
    complaints = [line for line in err.splitlines() if "cannot write the log" in line]
    assert len(complaints) == 1 and "No space left on device" in complaints[0], err[:3000]


def test_a_log_file_that_cannot_be_opened_is_one_line(home):
    home.ensure()
    (home.logs / "server.log").mkdir()            # a directory where the file should be
    r = run_server("--home", str(home.root))
    one_line_error(r, "theater-server: ", str(home.logs / "server.log"))
    assert not Path(home.run / "server.json").exists()


def test_relayed_lines_never_claim_more_than_err(home, capfd):
    """A worker runs untrusted code: what it prints reaches the journal at "err" at most."""
    sink = LogSink(None, journal=True)
    for line in ("<0>emergency", "<2>critical", "<4>warning", "no prefix"):
        sink.relay(line)
    assert capfd.readouterr().out.splitlines() == ["<3>emergency", "<3>critical", "<4>warning", "<6>no prefix"]


def test_after_a_failed_write_the_log_waits_before_trying_again(tmp_path):
    """While writes fail, lines are dropped without a write being tried more than once a second;
    once one gets through, it says how many were lost."""
    now = [100.0]
    path = tmp_path / "server.log"
    sink = LogSink(path, clock=lambda: now[0])
    good = os.dup(sink.fd)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, sink.fd)                     # the disk fills up
        sink.write("first")                        # fails: said once on stderr
        os.dup2(good, sink.fd)                     # the disk has room again ...
        now[0] += 0.5
        sink.write("second")                       # ... but it is not tried before RETRY_EVERY
        assert path.read_text() == "" and sink.dropped == 2
        now[0] += 0.6
        sink.write("third")
        assert path.read_text() == "theater-server: 2 log lines were lost (the log could not be written)\nthird\n"
    finally:
        os.close(full)
        os.close(good)
        sink.close()

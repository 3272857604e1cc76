"""A full disk (issue 16, finding 7): the chain stays up and says why it refuses events.

THEATER_HOME is a small tmpfs that the test fills. The chain process must not die (it
did, and was restarted ~3 times a second); it refuses new events with the reason, which
reaches the actors (they keep their events and take no new work), `theater list` and
`inspect`; the server keeps serving, and its log neither crashes it nor fills its stderr
with logging errors. When space returns, writes resume by themselves and no event is lost.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from theater.errors import TheaterError
from theater.paths import Home

from .conftest import ACTORS, EXAMPLES, Server, cli_events, cli_start, pid_alive, wait_for

SPAM = 20_000


@pytest.fixture
def small_home() -> Iterator[Home]:
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a small tmpfs as THEATER_HOME to fill it")
    root = Path(tempfile.mkdtemp(prefix="thf-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(root)], check=True)
    try:
        yield Home(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
        with contextlib.suppress(OSError):
            root.rmdir()


def fill(path: Path) -> int:
    """Writes ``path`` until the filesystem has no room left; the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    written += f.write(b"\0" * chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return written


def probe(folder: Path) -> Path:
    path = folder / "probe.toml"
    path.write_text(f'name = "disk"\nversion = "0.1.0"\ncomponent = "{ACTORS / "probe.wat"}"\n\n'
                    '[limits]\nevents_per_second = 1000000\n\n'
                    '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n')
    return path


def listed(server: Server) -> list[dict[str, Any]]:
    r = server.cli("list", "--json")
    assert r.code == 0, r.err
    return orjson.loads(r.out)


def test_a_full_disk_is_refused_with_its_reason_and_nothing_is_lost(small_home, tmp_path):
    server = Server(small_home).start()
    try:
        actor = cli_start(server, probe(tmp_path))
        with server.client() as c:
            assert c.request(actor, b"ehello") == b"hello"
        chain = server.chain_pid()
        filler = small_home.root / "filler"
        fill(filler)

        got: dict[str, Any] = {}

        def spam() -> None:
            try:
                with server.client(timeout=300) as c:
                    got["reply"] = c.request(actor, f"n{SPAM}".encode())
            except TheaterError as e:
                got["error"] = e.message
        t = threading.Thread(target=spam, daemon=True)
        t.start()

        # the chain refuses, and says why, where an operator looks
        rows = wait_for(lambda: (rows := listed(server)) and rows[0].get("chain_error") and rows, timeout=60,
                        what="`theater list` to show why the chain refuses events")
        assert "full" in rows[0]["chain_error"], rows
        text = server.cli("list").text
        assert "refusing new events" in text and "full" in text, text
        with server.client() as c:
            assert "full" in (c.inspect(actor)["chain_error"] or "")
        assert server.cli("inspect", actor).text.count("refusing new events") == 1
        assert server.chain_pid() == chain and pid_alive(chain), "the chain process died on a full disk"
        assert "reply" not in got, "a reply left before its events were stored"
        assert server.proc is not None and server.proc.poll() is None
        # a new component cannot be stored: one line, not "internal error in the server"
        r = server.cli("start", str(EXAMPLES / "counter" / "manifest.toml"))
        assert r.code != 0 and r.err.count("\n") == 1, r.err
        assert "cannot store it under" in r.err and "No space left on device" in r.err, r.err

        filler.unlink()                     # space returns: writes resume by themselves
        t.join(300)
        assert got.get("reply") == b"logged", got
        wait_for(lambda: not listed(server)[0].get("chain_error"), timeout=30, what="the refusal to end")
        assert server.chain_pid() == chain, "the chain process was restarted"

        evs = cli_events(server, actor)
        assert [e["seq"] for e in evs] == list(range(len(evs)))
        assert sum(1 for e in evs if e["body"].get("input") == ["spam"]) == SPAM
        v = server.cli("verify", actor)
        assert v.code == 0, v.text + v.err
        log = (small_home.logs / "server.log").read_text()
        assert "writes resumed" in log
        assert "log lines were lost" in log       # what could not be written was dropped, and counted
        assert "Logging error" not in log and "Traceback" not in log
    finally:
        server.stop()


def test_a_chain_process_that_keeps_dying_is_restarted_ever_more_slowly(server):
    """No crash loop (58 restarts in 20 s on a full disk, before): each quick death doubles the
    delay before the next restart, as the server's log says."""
    for _ in range(3):
        old = server.chain_pid()
        assert old is not None
        os.kill(old, 9)
        wait_for(lambda old=old: server.chain_pid() not in (None, old), timeout=30, what="a new chain process")
    log = (server.home.logs / "server.log").read_text()
    delays = [line.rsplit(" in ", 1)[1] for line in log.splitlines() if "chain process exited" in line]
    assert delays == ["0.2s", "0.4s", "0.8s"], delays

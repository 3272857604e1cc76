"""The web console over plain HTTP: who may read it (loopback names, the token), what every
answer carries (CSP), its JSON API, its options checked before anything starts, and a server
that stops promptly with live pages open."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psutil
import pytest
import zmq

from supervisor.console import web
from supervisor.console.hub import Hub
from supervisor.console.streams import Stream
from theater.paths import Home

from .conftest import ACTORS, ROOT, OpsServer, one_line_error, refuses_a_port_in_use, run_cli, run_server, wait_for

PROBE = ACTORS / "probe.toml"


def get(url: str, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Any, bytes]:
    """One request, redirects not followed: (status, headers, body)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def console():
    """One server for the module (its last test stops it): each test starts actors of its own."""
    root = Path(tempfile.mkdtemp(prefix="th-", dir="/tmp"))
    server = OpsServer(Home(root), "--console", "127.0.0.1:0").start()
    try:
        yield server, server.info()["console"]
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_off_the_console_is_not_even_imported():
    """No cost when off: the server's modules load neither the console's nor Jinja2 (the
    console is off by default: tests/test_metrics.py checks server.json says so)."""
    code = ("import sys, supervisor.__main__, supervisor.server; "
            "print(sorted(m for m in sys.modules if m.startswith(('jinja2', 'supervisor.console.'))))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", (p.stdout, p.stderr)


@pytest.mark.parametrize("args, needle", [
    (("--console", "nonsense"), "expected HOST:PORT"),
    (("--console", "127.0.0.1:99999"), "expected HOST:PORT"),
    (("--console", "0.0.0.0:8470"), "theater console --token"),
    (("--console", "127.0.0.1:0", "--console-token"), "theater console --token"),
    (("--console-token",), "goes with --console"),
])
def test_bad_console_options(home, args, needle):
    one_line_error(run_server("--home", str(home.root), *args), "theater-server: ", needle)
    assert not (home.run / "server.json").exists()


def test_a_console_port_in_use(home):
    refuses_a_port_in_use(home, "--console")


def test_every_answer_carries_the_security_headers(console):
    _, url = console
    for path in ("/", "/api/tree", "/nothing-here", "/static/console.js", "/api/actors/nope"):
        status, headers, _ = get(url, path)
        assert status in (200, 404), (path, status)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
    assert get(url, "/", method="POST")[0] == 501               # read-only: GET alone


def test_connections_past_the_cap_are_answered_503_not_given_a_thread(console):
    """Red-team finding: every connection got a thread before any auth, with no cap (1,500 idle
    ones made 628 threads in seconds)."""
    _, url = console
    u = urlsplit(url)
    idle = [socket.create_connection((u.hostname, u.port), timeout=30) for _ in range(web.MAX_CONNECTIONS)]
    try:
        assert wait_for(lambda: get(url, "/api/tree")[0] == 503, timeout=60, what="a connection past the cap refused")
    finally:
        for s in idle:
            s.close()
    wait_for(lambda: get(url, "/api/tree")[0] == 200, timeout=60, what="the console to answer again")


def test_on_loopback_only_loopback_names_are_answered(console):
    """A page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) gets nothing."""
    _, url = console
    port = urlsplit(url).port
    status, _, body = get(url, "/api/tree", {"Host": f"evil.example:{port}"})
    assert status == 403 and b"loopback" in body
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert get(url, "/api/tree", {"Host": host})[0] == 200


def test_the_token(home):
    r = run_cli_console(home, "--token")
    assert r.code == 0, r.err
    token = r.out.decode().strip()
    path = home.keys / "console.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert run_cli_console(home, "--token").out.decode().strip() == token          # made once
    server = OpsServer(home, "--console", "127.0.0.1:0", "--console-token").start()
    try:
        url = server.info()["console"]
        status, _, body = get(url, "/")
        assert status == 401 and b"theater console --token" in body
        assert get(url, "/?token=wrong")[0] == 401
        assert get(url, "/api/tree", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(url, "/api/tree", {"Authorization": f"Bearer {token}"})[0] == 200
        status, headers, _ = get(url, f"/actors/x/chain?since=3&token={token}")
        assert status == 303 and headers["Location"] == "/actors/x/chain?since=3"     # the token leaves the URL
        cookie = headers["Set-Cookie"]
        for odd in ("/\\evil.example/", "//evil.example/"):        # never a redirect off this console
            status, moved, _ = get(url, f"{odd}?token={token}")
            assert status != 303 or (moved["Location"][0] == "/" and moved["Location"][1] not in "/\\"), moved
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
        jar = {"Cookie": cookie.split(";")[0]}
        assert get(url, "/", jar)[0] == 200
        assert get(url, "/", {"Cookie": "theater_console=forged"})[0] == 401

        r = run_cli_console(home, "--token", "--rotate", "--json")
        new = orjson.loads(r.out)
        assert new["token"] != token and new["console"] == url
        assert get(url, "/", jar)[0] == 401                      # a new token ends every old cookie
        assert get(url, "/", {"Authorization": f"Bearer {new['token']}"})[0] == 200
        path.unlink()
        assert get(url, "/", {"Authorization": f"Bearer {new['token']}"})[0] == 401      # none: nobody
    finally:
        server.stop()


def run_cli_console(home, *args: str):
    return run_cli(home, "console", *args)


def test_console_without_token_flag_is_a_usage_error(home):
    one_line_error(run_cli_console(home), "theater: ", "--token")


def test_the_json_api(console, tmp_path):
    server, url = console
    with server.client() as c:
        probe = c.start(PROBE)["id"]
        assert c.request(probe, b"n3") == b"logged"

    def api(path: str, status: int = 200) -> Any:
        got, headers, body = get(url, path)
        assert got == status, (path, got, body)
        assert headers["Content-Type"] == "application/json"
        return orjson.loads(body)
    assert api("/api/server")["pid"] == server.pid
    assert probe in [n["id"] for n in api("/api/tree")["tree"]]
    assert api(f"/api/actors/{probe}")["actor"]["limits"]["mailbox"] == 1000
    page = api(f"/api/actors/{probe}/events?limit=2")
    assert [e["seq"] for e in page["events"]] == [0, 1] and page["more"] and page["next"] == 2
    logs = api(f"/api/actors/{probe}/events?type=theater:simple/runtime/log")["events"]
    assert [e["body"]["input"] for e in logs] == [["probe init"]] + [["spam"]] * 3
    report = api(f"/api/actors/{probe}/verify")
    assert report["ok"] and report["events"] >= 8
    read = wait_for(lambda: [s for s in api(f"/api/samples?actor={probe}")["samples"] if s["rss"]], timeout=30,
                    what="a sample of the probe's process")
    assert read[-1]["rss"] > 1 << 20
    by_prefix = api(f"/api/samples?actor={probe[:8]}")       # as every ?actor= takes (docs/console.md)
    assert by_prefix["actor"] == probe and by_prefix["samples"], by_prefix
    for route in ("samples", "stream"):                      # not an empty series, or a stream of nulls
        assert "no actor 'nope'" in api(f"/api/{route}?actor=nope", 404)["error"]
    assert "limit" in api(f"/api/actors/{probe}/events?limit=abc", 400)["error"]
    assert "no actor" in api("/api/actors/nope", 404)["error"]
    with server.client() as c:
        c.stop(probe)
    assert api(f"/api/actors/{probe}/verify")["ok"]                # a stopped actor's chain stays


def _console_pids(server_pid: int) -> list[int]:
    pids = []
    for p in psutil.Process(server_pid).children():
        try:
            if "supervisor.console" in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE:
                pids.append(p.pid)
        except psutil.Error:
            pass                # gone meanwhile
    return pids


def _answers(url: str) -> bool:
    try:
        return get(url, "/api/server")[0] == 200
    except OSError:
        return False


def test_a_live_read_takes_the_newest_events(console):
    """What a live page is sent: the newest events after the ones it has (``last``), not the
    oldest, so a page on a busy actor keeps up and counts what it skipped."""
    server, _ = console
    with server.client() as c:
        probe = c.start(PROBE)["id"]
        assert c.request(probe, b"n20") == b"logged"
        every = [e.seq for e in c.events(probe)]
        header, frames = c.call("events", actor=probe, since=2, last=True, limit=5)
        assert [m["seq"] for m in header["events"]] == every[-5:] and len(frames) == 5
        header, _ = c.call("events", actor=probe, since=every[-2], last=True, limit=5)
        assert [m["seq"] for m in header["events"]] == every[-2:]
        header, _ = c.call("events", actor=probe, since=2, limit=5)          # without it: the oldest
        assert [m["seq"] for m in header["events"]] == [2, 3, 4, 5, 6]
        c.stop(probe)


def test_the_console_is_a_process_of_its_own_restarted_on_its_port(console):
    """Pages are rendered in a process of the console's own (never on the server's GIL, which
    relays the requests being served); killed, it is restarted and the same URL answers again."""
    server, url = console
    (first,) = _console_pids(server.pid)
    assert first != server.pid and get(url, "/api/server")[0] == 200
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: [p for p in _console_pids(server.pid) if p != first], timeout=60, what="a new console process")
    wait_for(lambda: _answers(url), timeout=60, what="the console answering again")
    log = (server.home.logs / "server.log").read_text()
    assert "console process exited (status -9)" in log, log[-3000:]


def test_the_console_needs_no_keys_when_the_server_takes_curve(home):
    """With --listen tcp:// and --curve, the console still reaches the server: over its own
    endpoint, bound before CURVE applies, a socket file only the server's user may open."""
    assert run_cli(home, "key", "--curve").code == 0
    server = OpsServer(home, "--listen", "tcp://127.0.0.1:0", "--curve", "--console", "127.0.0.1:0").start()
    try:
        url = server.info()["console"]
        wait_for(lambda: _answers(url), timeout=60, what="the console relaying the server's answer")
        status, _, body = get(url, "/api/server")          # the server's own answer (a ping), relayed
        assert status == 200 and orjson.loads(body)["listen"] == server.info()["listen"], body
        assert stat.S_IMODE((home.run / "console.sock").stat().st_mode) == 0o600
    finally:
        server.stop()
    assert not (home.run / "console.sock").exists()


def test_the_server_stops_promptly_with_live_pages_open(console):
    """The console is closed before the server's ZeroMQ context: open streams end, their threads
    are joined, and the server exits cleanly. (Last in the module: it stops the module's server.)"""
    server, url = console
    with server.client() as c:
        probe = c.start(PROBE)["id"]
    opened: list[bytes] = []

    def follow(path: str) -> None:
        u = urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            opened.append(r.readline())
            while r.readline():
                pass
        except OSError:
            pass
        finally:
            conn.close()
    readers = [threading.Thread(target=follow, args=(p,), daemon=True)
               for p in ("/api/stream", f"/api/stream?actor={probe}")]
    for t in readers:
        t.start()
    wait_for(lambda: len(opened) == 2, timeout=30, what="both streams open")
    try:
        os.kill(server.pid, signal.SIGTERM)
        assert server.proc is not None
        code = server.proc.wait(60)
        assert code == 0, server.stderr
        for t in readers:
            t.join(30)
            assert not t.is_alive()                    # the server ended the streams
        log = (server.home.logs / "server.log").read_text()
        assert "ERROR theater.console" not in log and "Traceback" not in log, log[-3000:]
    finally:
        server.stop()


def test_a_second_page_on_an_actor_that_cannot_be_followed_is_not_kept_waiting():
    """Red-team finding: after the first page on an unknown actor was told so, a second one
    waited the whole 10 s before its first byte: the failed follow stayed, with no request."""
    hub = Hub(zmq.Context.instance(), "ipc:///nonexistent")       # its thread is not started
    for fd in (hub._wake_r, hub._wake_w):
        os.close(fd)                            # (its wake-up pipe: not used here)
    asked: list = []
    hub._request = lambda kind, fields, then: asked.append(then)
    first, second = Stream("nosuch"), Stream("nosuch")
    hub._follow("nosuch", first)
    asked[-1]({"k": "error", "code": "not_found", "error": "no actor 'nosuch'"}, [])
    assert first.ready.is_set()
    hub._follow("nosuch", second)
    assert len(asked) == 2                      # asked again, not left waiting on the failed one
    asked[-1]({"k": "error", "code": "not_found", "error": "no actor 'nosuch'"}, [])
    assert second.ready.is_set()

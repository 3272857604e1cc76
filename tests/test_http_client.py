"""``http-client`` through the gateway, with a real HTTP server on loopback started by each test.

The requests are made by the gateway process (the worker holds no connection to the web
server); a host off the list, a redirect to one and a name that resolves outside the list
are refused before anything is sent (the servers see nothing) and recorded as
``http-client/permission-denied``; a secret reaches the server's headers and nothing else:
no event, no log line, no export, not the chain's database, not the actor.
"""

from __future__ import annotations

import base64
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import psutil
import pytest

from . import agent
from .conftest import Server, cli_events, cmdline, run_cli, wait_for

TOKEN = "s3cr3t-from-server-toml-7f3a"
FILE_TOKEN = "s3cr3t-from-a-file-91bc"


class Web:
    """A loopback HTTP server in a thread of the test; it records every request it gets."""

    def __init__(self, redirect_to: str = "") -> None:
        self.seen: list[dict[str, Any]] = []
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"          # keep-alive: the gateway reuses its connections

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                web.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                 "body": body, "client": self.client_address})
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("location", redirect_to)
                    out = b""
                elif self.path == "/echo-auth":          # a careless server: it repeats the credentials
                    self.send_response(200)
                    self.send_header("x-seen", self.headers.get("authorization", ""))
                    out = f"{self.headers.get('authorization')}|{self.headers.get('x-file')}".encode()
                else:
                    self.send_response(201 if self.command == "POST" else 200)
                    self.send_header("x-path", self.path)
                    out = b"got " + body if self.command == "POST" else b"hello from " + self.path.encode()
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web() -> Iterator[Web]:
    w = Web()
    yield w
    w.stop()


@pytest.fixture
def offlist() -> Iterator[Web]:
    """A server no grant names: it must never see a request."""
    w = Web()
    yield w
    w.stop()


@pytest.fixture
def secret_server(home) -> Iterator[Server]:
    """A server with one secret in server.toml and one in a file under keys/secrets/."""
    home.ensure()
    config = home.root / "server.toml"
    config.write_text(f'[secrets]\nTOKEN = "{TOKEN}"\n')
    os.chmod(config, 0o600)
    home.secrets.mkdir(mode=0o700)
    (home.secrets / "FILE_TOKEN").write_text(FILE_TOKEN + "\n")
    os.chmod(home.secrets / "FILE_TOKEN", 0o600)
    s = Server(home).start()
    try:
        yield s
    finally:
        s.stop()


def events_of(server: Server, actor: str, event_type: str) -> list[dict[str, Any]]:
    return [e for e in cli_events(server, actor) if e["type"] == event_type]


def process_named(server: Server, needle: str) -> psutil.Process:
    return next(p for p in server.descendants() if needle in " ".join(cmdline(p)))


def test_get_and_post_are_made_by_the_gateway_and_recorded(server, web, tmp_path):
    m = agent.manifest(tmp_path, http=f'allowed_hosts = ["127.0.0.1:{web.port}"]')
    with server.client() as c:
        actor = c.start(m)["id"]
        status, headers, body = agent.http_reply(agent.ok(c, actor, "H", "GET", web.url("/hello?x=1")))
        assert (status, body) == (200, b"hello from /hello?x=1")
        assert ("x-path", "/hello?x=1") in headers
        status, _, body = agent.http_reply(agent.ok(c, actor, "H", "POST", web.url("/things"), b"\x00payload\xff"))
        assert (status, body) == (201, b"got \x00payload\xff")
    get, post = web.seen
    assert (get["method"], get["path"], get["headers"]["x-agent"]) == ("GET", "/hello?x=1", "agent")
    assert (post["method"], post["body"]) == ("POST", b"\x00payload\xff")
    # one connection for both (reused), and it is the gateway's, not the worker's
    assert get["client"] == post["client"]
    gateway = process_named(server, "supervisor.gateway")
    worker = process_named(server, f"--actor {actor}")
    port = post["client"][1]
    assert any(c.laddr and c.laddr.port == port for c in gateway.net_connections(kind="tcp"))
    assert not worker.net_connections(kind="inet")
    calls = events_of(server, actor, "theater:simple/http-client/send-http")
    assert [e["body"]["output"]["ok"]["status"] for e in calls] == [200, 201]
    assert calls[1]["body"]["input"][0]["body"] == {"b64": base64.b64encode(b"\x00payload\xff").decode()}
    assert calls[1]["body"]["output"]["ok"]["body"] == {"b64": base64.b64encode(b"got \x00payload\xff").decode()}


def test_refused_requests_never_reach_the_network_and_are_recorded(server, offlist, tmp_path):
    target = Web(redirect_to=offlist.url("/stolen"))
    try:
        m = agent.manifest(tmp_path, http=f'allowed_hosts = ["127.0.0.1:{target.port}", "*:{target.port}"]\n'
                                          f'allowed_methods = ["GET", "POST"]')
        with server.client() as c:
            actor = c.start(m)["id"]
            # a host off the list
            tag, why = agent.ask(c, actor, "H", "GET", offlist.url("/x"))
            assert tag == "E" and b"not in allowed_hosts" in why
            # a redirect is handed back, not followed; following it is a request like any other
            status, headers, _ = agent.http_reply(agent.ok(c, actor, "H", "GET", target.url("/redirect")))
            assert status == 302 and ("location", offlist.url("/stolen")) in headers
            tag, why = agent.ask(c, actor, "H", "GET", offlist.url("/stolen"))
            assert tag == "E" and b"not in allowed_hosts" in why
            # a name the list admits ("*") that resolves to a loopback address the list does not name
            tag, why = agent.ask(c, actor, "H", "GET", target.url("/x", host="localhost"))
            assert tag == "E" and b"localhost resolves to 127.0.0.1" in why
            # a method the grant does not allow, to a host it does
            tag, why = agent.ask(c, actor, "H", "PUT", target.url("/x"))
            assert tag == "E" and b"method PUT is not in allowed_methods" in why
        assert offlist.seen == []
        assert [s["path"] for s in target.seen] == ["/redirect"]
        denied = events_of(server, actor, "http-client/permission-denied")
        assert [(d["body"]["method"], d["body"]["uri"]) for d in denied] == [
            ("GET", offlist.url("/x")), ("GET", offlist.url("/stolen")),
            ("GET", target.url("/x", host="localhost")), ("PUT", target.url("/x"))]
        errs = [e["body"]["output"] for e in events_of(server, actor, "theater:simple/http-client/send-http")]
        assert sum("err" in o for o in errs) == 4
    finally:
        target.stop()


def test_an_empty_allow_list_allows_nothing(server, web, tmp_path):
    m = agent.manifest(tmp_path, http="allowed_hosts = []")
    with server.client() as c:
        actor = c.start(m)["id"]
        tag, why = agent.ask(c, actor, "H", "GET", web.url("/x"))
    assert tag == "E" and b"not in allowed_hosts" in why
    assert web.seen == []


def test_a_secret_reaches_the_server_and_no_event_log_or_export(secret_server, web, tmp_path):
    server = secret_server
    m = agent.manifest(tmp_path, http=f'allowed_hosts = ["127.0.0.1:{web.port}"]\n'
                                      'headers = { authorization = "Bearer ${secret:TOKEN}", '
                                      'x-file = "${secret:FILE_TOKEN}" }')
    with server.client() as c:
        actor = c.start(m)["id"]
        status, headers, body = agent.http_reply(agent.ok(c, actor, "H", "GET", web.url("/echo-auth")))
    (seen,) = web.seen
    assert seen["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert seen["headers"]["x-file"] == FILE_TOKEN
    # what the server sent back is masked before it reaches the actor
    assert status == 200 and body == b"Bearer ${secret:TOKEN}|${secret:FILE_TOKEN}"
    assert ("x-seen", "Bearer ${secret:TOKEN}") in headers
    out = tmp_path / "export.jsonl"
    r = run_cli(server.home, "export", actor, "-o", str(out))
    assert r.code == 0, r.err
    exported = out.read_bytes()
    decoded = b"".join(base64.b64decode(orjson.loads(line)["data"]) for line in exported.splitlines())
    events = server.cli("events", actor, "--json").out
    server.stop()                   # the log and the database complete
    home = server.home
    stores = [home.chains_db, *home.root.glob("chains.db-*")]
    for secret in (TOKEN.encode(), FILE_TOKEN.encode()):
        assert secret not in events and secret not in exported and secret not in decoded
        assert secret not in (home.logs / "server.log").read_bytes()
        assert all(secret not in p.read_bytes() for p in stores if p.exists())


def test_an_undefined_secret_refuses_the_start_in_one_line(server, tmp_path):
    m = agent.manifest(tmp_path, http='allowed_hosts = ["example.com"]\n'
                                      'headers = { authorization = "Bearer ${secret:NOPE}" }')
    r = server.cli("start", str(m))
    assert r.code != 0 and r.err.count("\n") == 1
    assert f"{m}: [[handler]] #2 (http-client) headers authorization: secret 'NOPE' is not defined" in r.err


def test_replay_needs_no_network_and_no_store(server, web, tmp_path):
    m = agent.manifest(tmp_path, http=f'allowed_hosts = ["127.0.0.1:{web.port}"]')
    with server.client() as c:
        actor = c.start(m)["id"]
        agent.ok(c, actor, "H", "GET", web.url("/a"))
        agent.ok(c, actor, "H", "POST", web.url("/b"), b"x" * 1000)
        assert agent.ask(c, actor, "H", "GET", "http://127.0.0.1:1/")[0] == "E"       # refused
        sid = agent.ok(c, actor, "n").decode()
        ref = agent.ok(c, actor, "a", sid, "doc", b"some content")
        assert agent.ok(c, actor, "g", sid, ref) == b"some content"
        assert agent.ok(c, actor, "b", sid, "doc") == ref
    web.stop()
    shutil.rmtree(server.home.store)
    r = server.cli("replay", actor, "--json")
    report = orjson.loads(r.out)
    assert r.code == 0 and report["ok"] is True, r.err + r.text
    assert report["calls"] == 8          # init and the seven requests


def test_the_gateway_is_restarted_and_told_the_grants_again(server, web, tmp_path):
    m = agent.manifest(tmp_path, http=f'allowed_hosts = ["127.0.0.1:{web.port}"]')
    with server.client() as c:
        actor = c.start(m)["id"]
        agent.ok(c, actor, "H", "GET", web.url("/before"))
        first = process_named(server, "supervisor.gateway")
        first.kill()
        first.wait(10)

        def again() -> bool:
            try:
                return process_named(server, "supervisor.gateway").pid != first.pid
            except StopIteration:
                return False
        wait_for(again, timeout=30, what="a new gateway process")
        server.remember()
        status, _, _ = agent.http_reply(agent.ok(c, actor, "H", "GET", web.url("/after")))
    assert status == 200 and [s["path"] for s in web.seen] == ["/before", "/after"]
    assert "gateway process exited" in (server.home.logs / "server.log").read_text()


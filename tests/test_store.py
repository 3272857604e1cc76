"""The content store, kept by the gateway process: every v0.2 function, sharing by store id,
quotas, atomic writes, and who may ask at all."""

from __future__ import annotations

import hashlib
import os
import pwd
import struct
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest
import zmq

from theater import protocol

from . import agent
from .conftest import EXAMPLES, ROOT, Server, cli_events, cmdline, configured_server

COUNTER = EXAMPLES / "counter" / "manifest.toml"


def test_every_store_function_round_trips(server, tmp_path):
    m = agent.manifest(tmp_path)
    one, two = b"first \x00\xff content", b"second content"
    h1, h2 = hashlib.sha256(one).hexdigest().encode(), hashlib.sha256(two).hexdigest().encode()
    with server.client() as c:
        a = c.start(m)["id"]

        def ok(op: str, *fields: bytes | str) -> bytes:
            return agent.ok(c, a, op, *fields)
        sid = ok("n").decode()
        assert ok("s", sid, one) == h1 and ok("s", sid, one) == h1          # stored once
        assert ok("g", sid, h1) == one
        assert ok("e", sid, h1) == b"\x01" and ok("e", sid, h2) == b"\x00"
        assert ok("l", sid, "current", h1) == b""
        assert ok("b", sid, "current") == h1
        assert ok("a", sid, "other", two) == h2                             # store-at-label
        assert agent.counted(ok("L", sid)) == [b"current", b"other"]
        assert agent.counted(ok("C", sid)) == sorted([h1, h2])
        assert ok("c", sid, "current", b"third") == hashlib.sha256(b"third").hexdigest().encode()
        assert ok("p", sid, "current", h2) == b""                           # replace-at-label
        assert ok("b", sid, "current") == h2
        assert ok("f", sid, "current", h1) == b"" and ok("b", sid, "current") == h2   # not what it points at
        assert ok("f", sid, "current", h2) == b"" and agent.ask(c, a, "b", sid, "current") == ("N", b"")
        assert ok("r", sid, "other") == b"" and agent.counted(ok("L", sid)) == []
        labels = len(b"{}")
        (size,) = struct.unpack("<Q", ok("z", sid))
        assert size == len(one) + len(two) + len(b"third") + labels
        # what cannot be done is the actor's Err
        assert agent.ask(c, a, "g", sid, "0" * 64) == ("E", f"store {sid} holds no content {'0' * 64}".encode())
        assert agent.ask(c, a, "l", sid, "x", "0" * 64)[0] == "E"
        assert agent.ask(c, a, "g", sid, "../../keys/host.key")[0] == "E"
        tag, why = agent.ask(c, a, "s", "11111111-2222-3333-4444-555555555555", b"x")
        assert tag == "E" and b"no store" in why
        assert agent.ask(c, a, "L", "../keys")[0] == "E"
    # on disk: each object under the hash of its bytes
    objects = server.home.store / sid / "objects"
    assert {p.name: p.read_bytes() for p in objects.iterdir()} == {
        h1.decode(): one, h2.decode(): two, hashlib.sha256(b"third").hexdigest(): b"third"}


def test_two_actors_share_content_by_store_id(server, tmp_path):
    with server.client() as c:
        a = c.start(agent.manifest(tmp_path, name="writer"))["id"]
        b = c.start(agent.manifest(tmp_path, name="reader"))["id"]
        sid = agent.ok(c, a, "n").decode()
        ref = agent.ok(c, a, "a", sid, "report", b"shared bytes")
        assert agent.ok(c, b, "b", sid, "report") == ref
        assert agent.ok(c, b, "g", sid, ref) == b"shared bytes"
        agent.ok(c, b, "a", sid, "reply", b"from the reader")
        assert agent.ok(c, a, "g", sid, agent.ok(c, a, "b", sid, "reply")) == b"from the reader"


def test_a_write_over_the_actors_quota_is_refused_and_recorded(server, tmp_path):
    with server.client() as c:
        a = c.start(agent.manifest(tmp_path, store='max_bytes = "1KiB"'))["id"]
        sid = agent.ok(c, a, "n").decode()
        agent.ok(c, a, "s", sid, b"a" * 600)
        tag, why = agent.ask(c, a, "s", sid, b"b" * 600)
        assert tag == "E" and b"permission denied" in why and b"max_bytes (1024)" in why
        assert len(agent.counted(agent.ok(c, a, "C", sid))) == 1
    denied = [e for e in cli_events(server, a) if e["type"] == "store/permission-denied"]
    assert [(d["body"]["function"], d["body"]["store"]) for d in denied] == [("store", sid)]
    assert "max_bytes" in denied[0]["body"]["reason"]


@pytest.fixture
def small_store_server(home) -> Iterator[Server]:
    with configured_server(home, '[store]\nmax_bytes = "2KiB"\n') as s:
        yield s


def test_the_servers_cap_holds_across_stores(small_store_server, tmp_path):
    server = small_store_server
    with server.client() as c:
        a = c.start(agent.manifest(tmp_path))["id"]
        one, two = agent.ok(c, a, "n").decode(), agent.ok(c, a, "n").decode()
        agent.ok(c, a, "s", one, b"a" * 1500)
        tag, why = agent.ask(c, a, "s", two, b"b" * 1000)
        assert tag == "E" and b"the server's store is full" in why
        assert agent.counted(agent.ok(c, a, "C", two)) == []


CRASH = """
import os, signal, sys
from pathlib import Path
from supervisor.gateway.store import ContentStore
store = ContentStore(Path(sys.argv[1]), 1 << 30)
sid = store.new()
print(sid, flush=True)
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)    # the machine dies mid-write
store.put(sid, b"x" * (1 << 20), 1 << 30)
"""


def test_a_crash_mid_write_leaves_no_partial_object(tmp_path):
    from supervisor.gateway.store import ContentStore
    root = tmp_path / "store"
    p = subprocess.run([sys.executable, "-c", CRASH, str(root)], capture_output=True, cwd=ROOT, timeout=60)
    assert p.returncode == -9, p.stderr
    sid = p.stdout.decode().strip()
    assert list((root / sid / "objects").iterdir()) == []
    assert len(list((root / sid / "tmp").iterdir())) == 1        # the torn write, and only there
    store = ContentStore(root, 1 << 30)                          # the next gateway's start
    assert not (root / sid / "tmp").exists()
    assert store.list_content(sid) == [] and store.total_size(sid) == 0
    ref = store.put(sid, b"x" * (1 << 20), 1 << 30)
    assert store.get(sid, ref) == b"x" * (1 << 20)


def gateways(server: Server) -> list[int]:
    return [p.pid for p in server.descendants() if cmdline(p)[1:3] == ["-m", "supervisor.gateway"]]


def test_the_gateway_starts_with_the_first_actor_granted_one_of_its_handlers(server, tmp_path):
    """A host whose actors need no gateway runs none (a process and its memory saved)."""
    assert server.cli("start", str(COUNTER)).code == 0
    assert gateways(server) == []
    with server.client() as c:
        a = c.start(agent.manifest(tmp_path))["id"]
        assert len(agent.ok(c, a, "n")) == 36         # the store answered: through the gateway
    assert len(gateways(server)) == 1


def test_a_process_the_server_did_not_grant_is_refused(server, tmp_path):
    """A process that is not an actor's worker gets nothing from the gateway, even if it sends
    itself a grant: grants are taken from the server's pid only."""
    with server.client() as c:
        c.start(agent.manifest(tmp_path))          # the gateway runs from the first grant on
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(server.home.gateway_endpoint)
        sock.send_multipart(protocol.encode({"k": "grant", "actor": "x", "pid": os.getpid(),
                                             "config": {"store": {}}}))
        sock.send_multipart(protocol.encode({"k": "store_call", "id": "r1", "op": "new", "args": []}))
        assert sock.poll(30_000), "no answer from the gateway"
        header = orjson.loads(sock.recv_multipart()[0])
    finally:
        sock.close()
        ctx.term()
    assert header["re"] == "r1" and "runs no actor known to the server" in header["err"]
    assert list(server.home.store.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs a server running as root")
def test_a_worker_running_as_another_user_reaches_the_gateway(home, tmp_path):
    """Under --user the gateway's socket is opened to the workers' group, and only to it."""
    server = Server(home, "--user", "nobody").start()
    try:
        with server.client() as c:
            a = c.start(agent.manifest(tmp_path))["id"]
            sid = agent.ok(c, a, "n").decode()
            assert agent.ok(c, a, "g", sid, agent.ok(c, a, "s", sid, b"x")) == b"x"
        sock = home.run / "gateway.sock"
        st = sock.stat()
        assert (st.st_mode & 0o777, st.st_gid) == (0o660, pwd.getpwnam("nobody").pw_gid)
    finally:
        server.stop()

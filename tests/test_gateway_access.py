"""The gateway takes no worker's word for anything, and no worker can take it from the others:
what one sends neither makes it hold more than a few of its requests nor fill the server's log,
and is served, or refused in one answer, without a traceback. A gateway process of our own
(``python -m supervisor.gateway``: this test process is its server, ``--parent`` our pid), and
a second process in a worker's place.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest

from theater.paths import Home

from .conftest import ROOT, RawService, wait_for


class RawGateway(RawService):
    """``python -m supervisor.gateway`` with this test process as its server."""

    def __init__(self, home: Home) -> None:
        super().__init__(home, "supervisor.gateway", home.gateway_endpoint, "info")
        wait_for(lambda: "gateway ready" in self.log.read_text(), timeout=60, what="the gateway to start")


@pytest.fixture
def gateway(home: Home) -> Iterator[RawGateway]:
    g = RawGateway(home)
    try:
        yield g
    finally:
        g.close()


# A process of the workers' kind: n requests (a frame each) with malformed and refused messages
# between, then, once the test granted it, a store call and an HTTP request
FLOOD = """
import json, sys, zmq
endpoint, n = sys.argv[1], int(sys.argv[2])
sock = zmq.Context().socket(zmq.DEALER)
sock.connect(endpoint)
def ask(header, *frames):
    sock.send_multipart([json.dumps(header).encode(), *frames])
for i in range(n):
    ask({"k": "store_call", "id": f"s{i}", "op": "new", "args": []}, b"x" * 4096)
    ask({"k": "nonsense"})
    ask({"k": "revoke", "pid": 1})
answered, errors = 0, set()
while answered < n and sock.poll(60_000):
    errors.add(json.loads(sock.recv_multipart()[0]).get("err"))
    answered += 1
print(json.dumps({"answered": answered, "errors": sorted(errors)}), flush=True)
sys.stdin.readline()
ask({"k": "store_call", "id": "after", "op": "new", "args": []})
ask({"k": "http", "id": "http", "method": "GET", "uri": "http://127.0.0.1:1/", "headers": [["x-name", "Zoë"]]})
for _ in range(2):
    if sock.poll(60_000):
        print(sock.recv_multipart()[0].decode(), flush=True)
"""


def test_a_flood_from_a_process_granted_nothing_is_refused_at_once_and_logged_sparsely(gateway):
    """Red-team findings: the gateway kept every request of a process the server granted nothing
    (a worker whose actor has none of its handlers: most) for GRANT_WAIT, frames and all, however
    many, and logged a line for each, as for each malformed or refused message. And an HTTP header
    value that is not ASCII failed inside httpx: a traceback in the log at every request, and
    'internal error' for an answer."""
    n = 300
    p = subprocess.Popen([sys.executable, "-c", FLOOD, gateway.home.gateway_endpoint, str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert p.stdout is not None and p.stdin is not None
        flood = orjson.loads(p.stdout.readline())
        assert flood == {"answered": n, "errors": ["refused: this process runs no actor known to the server"]}, flood
        gateway.send({"k": "grant", "actor": "a", "name": "flooder", "pid": p.pid,
                      "config": {"store": {"max_bytes": 1 << 20}, "http-client": {"allowed_hosts": ["127.0.0.1:1"]}}})
        p.stdin.write(b"granted\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    answers = {h["re"]: h for h in map(orjson.loads, out.splitlines())}
    assert len(answers.get("after", {}).get("value", "")) == 36, (answers, err)          # a new store's id
    assert "not a valid header line" in answers["http"]["err"], answers
    log = gateway.log.read_text()
    for line in ("malformed message from pid", "revoke from pid", "which runs no actor the server told of"):
        assert 1 <= log.count(line) < 20, (line, log[-3000:])
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]

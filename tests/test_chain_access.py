"""The chain process trusts nothing a sender says about itself (issue 16, findings 2 and 14).

It recomputes every hash it stores; it takes an actor's events only from the process the
server bound to that actor (the kernel's SO_PEERCRED pid, not an identity the peer chose),
and records, queries and binds only from the server; everything else is refused with a
reason, and the chain goes on. Part 1 drives a chain process directly (this test process
is its "server": ``--parent`` is our pid) and a second local process (tests/rogue.py).
Part 2 runs a real server with ``--user`` and a rogue process of the workers' user, which
tries to forge, read and hijack, and fails at each. Part 3: nor does it take a worker's word
that it slows itself (chain.rates), in a chain process of our own again.
"""

from __future__ import annotations

import os
import pwd
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import cbor2
import orjson
import pytest

from chain.streams import UNBOUND_FOR
from theater import protocol
from theater.chaindb import STATE_PREFIX, ChainReader
from theater.errors import NotFound
from theater.events import encode_data, event_hash
from theater.paths import Home

from .conftest import EXAMPLES, ROGUE_ENV, ROOT, RawService, cli_events, cli_start, pid_alive, rogue_command, wait_for

COUNTER = EXAMPLES / "counter" / "manifest.toml"


# ---- a chain process of our own --------------------------------------------------------------------

def make_event(actor: str, seq: int, parent: bytes | None, value: Any = None, type_: str = "test/event",
               time_ns: int | None = None) -> tuple[dict[str, Any], bytes, bytes]:
    """(meta as a worker sends it, data, the event's true hash)."""
    data = encode_data({"n": seq} if value is None else value)
    h = event_hash(actor, seq, parent, type_, data)
    t = time.time_ns() if time_ns is None else time_ns
    return {"seq": seq, "hash": h.hex(), "type": type_, "time_ns": t}, data, h


class RawChain(RawService):
    """``python -m chain`` with this test process as its server."""

    def __init__(self, home: Home) -> None:
        super().__init__(home, "chain", home.chain_endpoint, "debug")
        self.ids = 0
        assert self.call({"k": "query", "what": "key"}, timeout=30)[0]["k"] == "ok", self.log.read_text()

    def call(self, header: dict[str, Any], *frames: bytes, timeout: float = 10) -> tuple[dict[str, Any], list[bytes]]:
        """Sends and returns the answer: the reply to its id, or (an append) its ack or nack."""
        if header["k"] != "append":
            self.ids += 1
            header = {"id": f"t{self.ids}", **header}
        self.send(header, *frames)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(left * 1000):
                break
            h, data = protocol.decode(self.sock.recv_multipart())
            if h.get("re") == header.get("id") or (header["k"] == "append" and h["k"] in ("ack", "nack")):
                return h, data
        raise AssertionError(f"no answer to {header['k']} within {timeout}s; chain log:\n{self.log.read_text()}")

    def append(self, actor: str, events: list[tuple[dict[str, Any], bytes, bytes]], **extra: Any) -> dict[str, Any]:
        header = {"k": "append", "actor": actor, "events": [m for m, _, _ in events],
                  "sizes": [len(d) for _, d, _ in events], "sync": True, **extra}
        return self.call(header, b"".join(d for _, d, _ in events))[0]

    def stored(self, actor: str) -> list[tuple[int, str, bytes]]:
        """(seq, type, hash) of each stored event, read from chains.db."""
        reader = ChainReader(self.home.chains_db)
        try:
            return [(e.seq, e.type, e.hash) for e in reader.events(actor)]
        except NotFound:
            return []
        finally:
            reader.close()


@pytest.fixture
def chain(home: Home) -> Iterator[RawChain]:
    c = RawChain(home)
    try:
        yield c
    finally:
        c.close()


def j(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


def rogue(*args: str, user: str | None = None, wait: float = 15) -> list[dict[str, Any]]:
    """Runs tests/rogue.py (as ``user`` if given); the messages it received."""
    p = subprocess.run(rogue_command(user, *args), capture_output=True, timeout=wait + 30, cwd=ROOT,
                       env=ROGUE_ENV)
    assert p.returncode == 0, p.stderr.decode()
    return [orjson.loads(line) for line in p.stdout.splitlines() if line.startswith(b"{")]


# ---- part 1: what the chain checks -----------------------------------------------------------------

def test_an_event_whose_claimed_hash_is_not_its_own_is_refused(chain):
    """The chain recomputes each hash: a worker cannot make it store an event under a hash that
    is a real hash, only of another event (which would fork the worker's view from the store)."""
    actor = str(uuid.uuid4())
    chain.send({"k": "bind", "actor": actor, "pid": os.getpid()})
    meta, data, _ = make_event(actor, 0, None, {"n": 0})
    _, _, other = make_event(actor, 0, None, {"n": "something else"})
    nack = chain.append(actor, [({**meta, "hash": other.hex()}, data, other)])
    assert nack["k"] == "nack" and nack["error"].startswith("conflict"), nack
    assert chain.stored(actor) == []
    good = make_event(actor, 0, None, {"n": 0})
    assert chain.append(actor, [good]) == {"k": "ack", "actor": actor, "seq": 0}
    assert chain.stored(actor) == [(0, "test/event", good[2])]


def _refusals(actor: str, other: str, e0: tuple, e1: tuple) -> dict[str, tuple[str, list, dict[str, Any]]]:
    """name -> (actor the append is for, events, extra header fields), each refused or ignored."""
    meta1, data1, h1 = e1
    return {
        "gap": (actor, [make_event(actor, 3, e1[2])], {}),
        "conflict": (actor, [make_event(actor, 0, None, {"n": "rewritten"})], {}),
        "malformed-sizes": (actor, [e1], {"sizes": [len(data1) + 1]}),
        "malformed-sizes-type": (actor, [e1], {"sizes": ["x"]}),
        "malformed-meta": (actor, [({k: v for k, v in meta1.items() if k != "hash"}, data1, h1)], {}),
        "malformed-seq": (actor, [({**meta1, "seq": "1"}, data1, h1)], {}),
        "malformed-time": (actor, [({**meta1, "time_ns": 1 << 63}, data1, h1)], {}),  # SQLite: at most 2^63 - 1
        "malformed-time-u64": (actor, [({**meta1, "time_ns": (1 << 64) - 1}, data1, h1)], {}),
        "malformed-negative-time": (actor, [({**meta1, "time_ns": -1}, data1, h1)], {}),
        "another-actor": (other, [make_event(other, 0, None)], {}),
        "server-recorded": (actor, [make_event(actor, 1, e0[2], {"kind": "normal"}, type_="lifecycle/exit")], {}),
    }


REFUSALS = ["gap", "conflict", "malformed-sizes", "malformed-sizes-type", "malformed-meta", "malformed-seq",
            "malformed-time", "malformed-time-u64", "malformed-negative-time", "another-actor", "server-recorded"]
EXPECTED = {"gap": "gap", "conflict": "conflict", "another-actor": "refused",
            "server-recorded": "malformed event: a lifecycle/exit event is the server's to record"}


@pytest.mark.parametrize("case", REFUSALS)
def test_each_refusal_of_an_append_says_why_and_stores_nothing(chain, case):
    actor, other = str(uuid.uuid4()), str(uuid.uuid4())
    chain.send({"k": "bind", "actor": actor, "pid": os.getpid()})
    e0 = make_event(actor, 0, None)
    e1 = make_event(actor, 1, e0[2])
    assert chain.append(actor, [e0])["k"] == "ack"
    target, events, extra = _refusals(actor, other, e0, e1)[case]
    answer = chain.append(target, events, **extra)
    assert answer["k"] == "nack", answer
    assert answer["error"].startswith(EXPECTED.get(case, "malformed")), answer
    if "time" in case:
        assert "time_ns" in answer["error"], answer
    assert chain.stored(actor) == [(0, "test/event", e0[2])]
    assert chain.stored(other) == []
    # the chain goes on: the right next event is taken
    assert chain.append(actor, [e1]) == {"k": "ack", "actor": actor, "seq": 1}
    assert [s for s, _, _ in chain.stored(actor)] == [0, 1]


@pytest.mark.parametrize("since", [1 << 63, (1 << 64) - 1])
def test_a_query_beyond_a_signed_64_bit_integer_is_refused(chain, since):
    """Issue 16, finding 6: `since = 2^63` once killed the chain process (OverflowError in SQLite)."""
    answer, _ = chain.call({"k": "query", "what": "events", "actor": str(uuid.uuid4()), "since": since})
    assert answer["k"] == "error" and "since" in answer["error"], answer
    assert chain.call({"k": "query", "what": "key"})[0]["k"] == "ok"
    assert chain.proc.poll() is None


def test_a_duplicate_is_acknowledged_and_stored_once(chain):
    actor = str(uuid.uuid4())
    chain.send({"k": "bind", "actor": actor, "pid": os.getpid()})
    e0 = make_event(actor, 0, None)
    e1 = make_event(actor, 1, e0[2])
    assert chain.append(actor, [e0, e1])["seq"] == 1
    assert chain.append(actor, [e0, e1]) == {"k": "ack", "actor": actor, "seq": 1}      # sent again after a restart
    assert chain.append(actor, [e1]) == {"k": "ack", "actor": actor, "seq": 1}
    assert [s for s, _, _ in chain.stored(actor)] == [0, 1]


def test_a_record_sent_again_after_a_chain_restart_is_stored_once(home):
    """The server sends again every record a dead chain process did not answer; one that died
    after its commit had stored it already (a second lifecycle/exit would be a second exit)."""
    actor = str(uuid.uuid4())
    exit_ = encode_data({"kind": "abnormal", "reason": "killed", "incarnation": 1})
    first = RawChain(home)
    try:
        first.send({"k": "bind", "actor": actor, "pid": os.getpid()})
        assert first.append(actor, [make_event(actor, 0, None)])["seq"] == 0
        assert first.call({"k": "record", "actor": actor, "type": "lifecycle/exit"}, exit_)[0]["seq"] == 1
    finally:
        first.proc.kill()           # as if it died before its answer left
        first.proc.wait()
        first.ctx.destroy(linger=0)
    again = RawChain(home)
    try:
        assert again.call({"k": "record", "actor": actor, "type": "lifecycle/exit"}, exit_)[0]["seq"] == 1
        later = encode_data({"kind": "abnormal", "reason": "killed", "incarnation": 2})
        assert again.call({"k": "record", "actor": actor, "type": "lifecycle/exit"}, later)[0]["seq"] == 2
        assert [(s, t) for s, t, _ in again.stored(actor)] == [(0, "test/event"), (1, "lifecycle/exit"),
                                                               (2, "lifecycle/exit")]
    finally:
        again.close()


def test_events_nobody_waits_on_are_acknowledged_in_the_chains_own_time(chain):
    """Appends without ``sync`` are acknowledged lazily (chain.acks.ACK_DELAY after their
    commit), every actor's, the oldest first, with no turn walking all of them."""
    actors = [str(uuid.uuid4()) for _ in range(3)]
    for actor in actors:                # a pid is one actor's worker at a time: each in turn
        chain.send({"k": "bind", "actor": actor, "pid": os.getpid()})
        parent: bytes | None = None
        for seq in range(2):
            meta, data, parent = make_event(actor, seq, parent)
            chain.send({"k": "append", "actor": actor, "events": [meta], "sizes": [len(data)]}, data)
    acked: dict[str, int] = {}

    def read() -> bool:
        while chain.sock.poll(100):
            h, _ = protocol.decode(chain.sock.recv_multipart())
            assert h["k"] == "ack", h
            acked[h["actor"]] = h["seq"]
        return len(acked) == len(actors) and set(acked.values()) == {1}
    wait_for(read, timeout=30, what="an acknowledgement for each actor's events")


def test_only_the_server_records_queries_and_binds(chain):
    """Another local process, even of the server's own user, is refused all of it: what the
    server would do, and a worker's part for an actor not bound to it."""
    actor = str(uuid.uuid4())
    chain.send({"k": "bind", "actor": actor, "pid": os.getpid()})
    assert chain.append(actor, [make_event(actor, 0, None)])["k"] == "ack"
    record = j(k="record", id="r1", actor=actor, type="lifecycle/forged")
    for header, frames in ((record, [encode_data({}).hex()]),
                           (j(k="query", id="q1", what="events", actor=actor), []),
                           (j(k="query", id="q2", what="state", actor=actor), []),
                           (j(k="query", id="q3", what="chains"), []),
                           (j(k="bind", id="b1", actor=actor, pid=1), [])):
        got = rogue("ask", chain.home.chain_endpoint, header, *frames, "--wait", "10")
        assert got and got[-1]["header"]["k"] == "error" and got[-1]["header"]["code"] == "refused", (header, got)
    # a worker's part, from a process bound to no actor: it waits for a bind, then is refused
    _, _, h0 = make_event(actor, 0, None)
    meta, data, _ = make_event(actor, 1, h0, type_="lifecycle/forged")
    append = j(k="append", actor=actor, events=[meta], sizes=[len(data)], sync=True)
    got = rogue("ask", chain.home.chain_endpoint, append, data.hex(), "--wait", "20")
    assert got and got[-1]["header"]["k"] == "nack" and got[-1]["header"]["error"].startswith("refused"), got
    got = rogue("ask", chain.home.chain_endpoint, j(k="resume", id="r", actor=actor), "--wait", "20")
    assert got and got[-1]["header"]["k"] == "error", got
    assert [t for _, t, _ in chain.stored(actor)] == ["test/event"]
    assert "refused" in chain.log.read_text()


def test_a_header_whose_fault_the_decoder_could_not_name_is_refused_and_the_chain_goes_on(chain):
    """An object field missing, or a reply's ``types`` not a list, raised KeyError or TypeError out
    of protocol.decode, not its ProtocolError: the chain process died of it, and any process that
    reaches run/chain.sock (every worker does) could have kept it dying."""
    h, _ = chain.call({"k": "grant", "actor": "a", "pid": 1})        # (decoded before its sender is looked at)
    assert h["k"] == "error" and h["code"] == "protocol" and "config" in h["error"], h
    chain.send({"k": "ok", "re": "x", "types": 5})
    assert chain.call({"k": "query", "what": "key"})[0]["k"] == "ok"


def test_a_query_naming_more_types_than_a_person_would_is_refused(chain):
    """Red-team finding: a worker may query its own events by type, each a glob matched against
    every type its chain holds and compiled: 100,000 of them (one header) held the chain's loop,
    every actor's commits, for seconds, and a worker may send one such query a turn."""
    actor = str(uuid.uuid4())
    chain.send({"k": "bind", "actor": actor, "pid": os.getpid()})
    assert chain.append(actor, [make_event(actor, 0, None)])["k"] == "ack"
    for types in ([f"nothing-{i}" for i in range(100_000)], ["*" + "a" * 10_000]):
        answer, _ = chain.call({"k": "query", "what": "events", "actor": actor, "types": types})
        assert answer["k"] == "error" and answer["code"] == "protocol" and "'types'" in answer["error"], answer
    answer, _ = chain.call({"k": "query", "what": "events", "actor": actor, "types": ["test/*"]})
    assert [e["seq"] for e in answer["events"]] == [0], answer


def test_what_a_worker_could_repeat_at_every_message_is_logged_one_line_a_second(chain):
    """Red-team finding: a worker may send an event that conflicts with its chain again and again
    (as fast as its rates let it: 12,500 a second by default), or open its stream and break its
    framing again and again; each was a warning in the server's log."""
    actor = str(uuid.uuid4())
    chain.send({"k": "bind", "actor": actor, "pid": os.getpid()})
    e0 = make_event(actor, 0, None)
    assert chain.append(actor, [e0])["k"] == "ack"
    meta, data, _ = make_event(actor, 0, None, {"n": "rewritten"})
    for _ in range(200):
        chain.send({"k": "append", "actor": actor, "events": [meta], "sizes": [len(data)], "sync": True}, data)
    nacks = 0
    while nacks < 200:
        assert chain.sock.poll(30_000), f"{nacks} answers of 200"
        h, _ = protocol.decode(chain.sock.recv_multipart())
        assert h["k"] == "nack" and h["error"].startswith("conflict"), h
        nacks += 1
    for _ in range(100):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(chain.home.chain_stream))
            s.sendall(b"\xff" * 4)             # a message longer than any
            s.settimeout(30)
            assert s.recv(1) == b""             # the chain ends the stream
    assert chain.call({"k": "query", "what": "key"})[0]["k"] == "ok"
    log = chain.log.read_text()
    assert 1 <= log.count("refused an event") < 20 and 1 <= log.count("closed the event stream") < 20, log


def state_event(actor: str, seq: int, parent: bytes | None, data: bytes,
                marked: bool = True) -> tuple[dict[str, Any], bytes, bytes]:
    """A wasm result as a worker sends one, whatever ``data`` holds (``marked``: it sets the state)."""
    h = event_hash(actor, seq, parent, "wasm", data)
    meta = {"seq": seq, "hash": h.hex(), "type": "wasm", "time_ns": time.time_ns()}
    return ({**meta, "state": True} if marked else meta), data, h


def result(state: Any) -> bytes:
    return encode_data({"event": "result", "state": state, "result": [], "function": "f"})


# data that begins as a wasm result that sets the state does (chaindb.STATE_PREFIX), yet sets none
NOT_A_STATE = {"cut-short": STATE_PREFIX, "no-cbor-tag-decodes": result(cbor2.CBORTag(35, "(")),
               "state-a-list": result([1]), "state-a-number": result(5)}


@pytest.mark.parametrize("case", sorted(NOT_A_STATE))
def test_an_event_marked_as_setting_a_state_it_does_not_hold_is_refused(chain, case):
    """Red-team finding: the chain reads the state an event says it sets (the actor resumes from it).
    Data that is not CBOR killed the chain process (cbor2's error is no ValueError since cbor2 6:
    any worker could keep it dying); a state of another type than bytes was staged before it was
    read, then failed the group's commit (every actor's events in it refused, as if the disk were
    full) or, a number, killed the chain at the actor's next resume."""
    actor = str(uuid.uuid4())
    chain.send({"k": "bind", "actor": actor, "pid": os.getpid()})
    e0 = make_event(actor, 0, None)
    assert chain.append(actor, [e0])["k"] == "ack"
    answer = chain.append(actor, [state_event(actor, 1, e0[2], NOT_A_STATE[case])])
    assert answer["k"] == "nack" and answer["error"].startswith("malformed event"), answer
    assert chain.stored(actor) == [(0, "test/event", e0[2])]
    e1 = make_event(actor, 1, e0[2])
    assert chain.append(actor, [e1]) == {"k": "ack", "actor": actor, "seq": 1}
    answer, _ = chain.call({"k": "resume", "actor": actor})
    assert answer["k"] == "ok" and answer["seq"] == 1 and not answer["has_state"], answer


def test_a_stored_result_that_only_looks_like_a_state_is_passed_over_when_a_head_is_read(home):
    """A result not marked as setting the state is stored unread, but its data may begin as a
    state's does: an actor's head read again (a new chain process; a head forgotten once its
    worker is gone) found it first and read it, and its error killed the chain process at that
    actor's next resume or record, at each restart (the server sends its record again)."""
    actor = str(uuid.uuid4())
    e0 = state_event(actor, 0, None, result(b"s0"))
    e1 = state_event(actor, 1, e0[2], STATE_PREFIX, marked=False)
    first = RawChain(home)
    try:
        first.send({"k": "bind", "actor": actor, "pid": os.getpid()})
        assert first.append(actor, [e0, e1]) == {"k": "ack", "actor": actor, "seq": 1}
    finally:
        first.close()
    again = RawChain(home)
    try:
        again.send({"k": "bind", "actor": actor, "pid": os.getpid()})
        answer, frames = again.call({"k": "resume", "actor": actor})
        assert answer["k"] == "ok" and answer["seq"] == 1 and answer["has_state"] and frames == [b"s0"], answer
        assert again.call({"k": "record", "actor": actor, "type": "lifecycle/exit"}, encode_data({}))[0]["seq"] == 2
    finally:
        again.close()


def test_an_event_stream_held_by_a_process_that_is_no_actors_worker_is_closed(chain):
    """A connection to the events' stream from a process no actor is bound to (here: ours) is
    closed by the chain in time (chain.streams.UNBOUND_FOR), not held open for good."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(chain.home.chain_stream))
        s.settimeout(UNBOUND_FOR + 30)
        assert s.recv(1) == b"", "the chain sent something to a stranger"
    finally:
        s.close()


def test_a_resume_that_comes_before_its_bind_waits_for_it(chain):
    """A worker asks for its resume while the server is still telling the chain its pid."""
    actor = str(uuid.uuid4())

    def started(p: subprocess.Popen[bytes]) -> None:
        wait_for(lambda: "chain: " in chain.log.read_text() and pid_alive(p.pid), what="the rogue to start")
        time.sleep(0.3)         # not synchronisation: lets the resume arrive first, as it often does
    out, err = _ask_then_bind(chain, actor, [j(k="resume", id="r", actor=actor, name="late")], started)
    answers = [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    assert answers and answers[-1]["header"]["k"] == "ok", (answers, err)
    assert answers[-1]["header"]["seq"] == -1


# ---- part 2: a rogue process of the workers' user, against a real server ------------------------

def test_a_worker_users_process_cannot_forge_read_or_hijack(user_server, worker_user):
    server, home = user_server, user_server.home
    victim = cli_start(server, COUNTER)
    with server.client() as c:
        assert c.request(victim, b"+1") == b"1"
    with server.client() as c:
        pid = c.inspect(victim)["pid"]
    assert pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name == worker_user      # the premise
    before = cli_events(server, victim)
    head = bytes.fromhex(before[-1]["hash"])
    chain = home.chain_endpoint

    # (a) write its events: a perfectly formed next event, and a server record
    meta, data, _ = make_event(victim, len(before), head, {"forged": True}, type_="lifecycle/forged")
    append = j(k="append", actor=victim, events=[meta], sizes=[len(data)], sync=True)
    got = rogue("ask", chain, append, data.hex(), user=worker_user, wait=20)
    assert got and got[-1]["header"]["k"] == "nack" and "refused" in got[-1]["header"]["error"], got
    record = j(k="record", id="r", actor=victim, type="lifecycle/forged")
    got = rogue("ask", chain, record, encode_data({}).hex(), user=worker_user)
    assert got and got[-1]["header"]["k"] == "error", got

    # (b) read its events or state: queries, a resume (which answers with the state), the event feed
    for header in (j(k="query", id="q", what="events", actor=victim),
                   j(k="query", id="q", what="state", actor=victim),
                   j(k="resume", id="q", actor=victim)):
        got = rogue("ask", chain, header, user=worker_user, wait=20)
        assert got and got[-1]["header"]["k"] == "error" and not got[-1]["frames"], (header, got)
    for sock in ("events.sock", "theater.sock"):
        out = subprocess.run(rogue_command(worker_user, "connect", str(home.run / sock)), cwd=ROOT,
                             capture_output=True, env=ROGUE_ENV)
        assert out.stdout.strip() == b"PermissionError", (sock, out)

    # (c) receive its control messages: a connection claiming the worker's routing id as it was
    # (w-<pid>) and a hello claiming the actor with the worker's pid
    hello = j(k="hello", id="h", actor=victim, pid=pid, endpoint="ipc:///tmp/nowhere")
    listener = subprocess.Popen(rogue_command(worker_user, "listen", home.control_endpoint, f"w-{pid}", hello),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                                env=ROGUE_ENV)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == b"ready"
        with server.client() as c:
            for n in (2, 3):
                assert c.request(victim, b"+1") == str(n).encode()      # still reachable, still itself
    finally:
        out, _ = listener.communicate(b"", timeout=20)
    assert out.strip() == b"", f"the rogue received: {out[:500]!r}"

    after = cli_events(server, victim)
    assert after[: len(before)] == before
    assert not [e for e in after if e["type"] == "lifecycle/forged"]
    v = server.cli("verify", victim)
    assert v.code == 0, v.text + v.err
    assert "refused" in (home.logs / "server.log").read_text()
    with server.client() as c:
        assert c.inspect(victim)["pid"] == pid and pid_alive(pid)


FLOOD = """
import json, sys, zmq
sys.stdin.readline()                                   # bound by now
sock = zmq.Context().socket(zmq.DEALER)
sock.connect(sys.argv[1])
queries = sys.argv[2:]
for q in queries:
    sock.send(q.encode())
for _ in queries:
    print(sock.recv_multipart()[0].decode(), flush=True)
"""


def test_a_worker_asks_the_chain_one_thing_at_a_time(chain):
    """Red-team finding: a (compromised) worker sent thousands of queries of its own chain at
    once; answered in one turn, they held every actor's commit back for seconds. A worker's
    second query in one turn is refused (a worker pages its chain one query after another)."""
    actor = str(uuid.uuid4())
    chain.send({"k": "bind", "actor": actor, "pid": os.getpid()})
    assert chain.append(actor, [make_event(actor, 0, None)])["k"] == "ack"
    queries = [j(k="query", id=f"q{i}", what="events", actor=actor) for i in range(200)]
    p = subprocess.Popen([sys.executable, "-c", FLOOD, chain.home.chain_endpoint, *queries],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        chain.send({"k": "bind", "actor": actor, "pid": p.pid})
        assert chain.call({"k": "query", "what": "key"})[0]["k"] == "ok"      # the bind is taken
        out, err = p.communicate(b"go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    answers = [orjson.loads(line) for line in out.splitlines()]
    kinds = [a["k"] for a in answers]
    # each turn of the chain answers one of them (how many turns the burst spans depends on the load)
    assert len(answers) == len(queries) and 1 <= kinds.count("ok") <= len(queries) // 2, (kinds, err)
    assert all("one query at a time" in a["error"] for a in answers if a["k"] == "error"), answers


# ---- part 3: a worker that does not slow itself -----------------------------------------------------

def test_an_honest_workers_pace_never_holds_it_up():
    """A worker slowed by its own throttle (worker.throttle: a second's burst at its limits)
    ships its events every 5 ms with its own limit/throttled events, and they reach the chain up
    to a second late and in bunches (a busy chain): the chain's buckets (chain.rates) never hold
    its stream when it has more to write, whatever the limits, for events or bytes (a large
    event is held, for less time than the worker then waits on its own)."""
    from chain.rates import Rates
    from worker.throttle import Throttle

    rng = random.Random(16)
    for per_second, size, byte_limit in ((1, 100, 64 << 10), (100, 200, 1 << 20), (2_000, 10, 16 << 20),
                                         (10_000, 200, 1 << 20), (5, 300 << 10, 64 << 10)):
        now = arrived = free_at = reported = 0.0
        throttle = Throttle(per_second, byte_limit, now)
        rates = Rates()
        rates.bind({"actor": "a", "pid": 1, "events_per_second": per_second, "event_bytes_per_second": byte_limit},
                   now)
        rates.paces["a"].events.tokens = rates.paces["a"].events.size     # without a new worker's credit
        batch: list[dict[str, Any]] = []
        while now < 8:
            waited = throttle.wait(now)
            now += waited
            if waited and now - reported >= 1:      # the worker's limit/throttled: not throttled itself
                batch.append({"seq": 0, "hash": "00" * 32, "type": "limit/throttled", "time_ns": 0})
                reported = now
            if not batch:
                first = now
            batch.append({"seq": 1 << 40, "hash": "ab" * 32, "type": "theater:simple/runtime/log",
                          "time_ns": time.time_ns()})
            if len(batch) == 256 or now - first >= 0.005:
                throttle.spent(size * len(batch), now)
                header = {"k": "append", "actor": "a", "events": batch, "sizes": [size] * len(batch)}
                arrived = max(arrived, now + rng.random())
                assert arrived >= free_at, (per_second, size, byte_limit, now)     # it was not held up
                free_at = arrived + rates.charge("a", [orjson.dumps(header), b"x" * (size * len(batch))], header,
                                                 arrived)
                batch = []
            now += 0.00001                          # the actor's own work between two events
        assert throttle.delayed, "the worker never slowed itself: nothing was shown"


def test_a_workers_backlog_passes_when_the_chain_takes_events_again():
    """A worker sends at once every event the chain has not acknowledged (up to MAX_UNACKED)
    to a new chain process, or once a full disk is written again: that is not a flood."""
    from chain.rates import BACKLOG, Rates
    from worker.chainlink import MAX_UNACKED

    assert BACKLOG >= MAX_UNACKED
    rates = Rates()
    rates.bind({"actor": "a", "pid": 1, "events_per_second": 100}, 0.0)
    size = int(rates.paces["a"].events.size)

    def backlog(n: int, now: float) -> float:
        header = {"k": "append", "events": [{}] * n}
        return rates.charge("a", [orjson.dumps(header), b""], header, now)
    assert backlog(MAX_UNACKED + size, 0.0) == 0               # a new worker, or a new chain process
    assert backlog(200, 0.1) > 1                                # then the rate holds
    rates.resumed(60.0)                                         # writes resumed after a full disk
    assert backlog(MAX_UNACKED + size, 60.0) == 0
    assert backlog(200, 60.1) > 1


def test_a_worker_appends_on_its_stream_only(chain):
    """Appends on the ROUTER would pass the chain's pacing of the worker's stream (chain.rates):
    a worker's are refused there, bound or not (the server's own, the tests', are taken)."""
    actor = str(uuid.uuid4())
    meta, data, _ = make_event(actor, 0, None)
    append = j(k="append", actor=actor, events=[meta], sizes=[len(data)], sync=True)
    out, err = _ask_then_bind(chain, actor, [append, data.hex()])
    answers = [orjson.loads(line)["header"] for line in out.splitlines() if line.startswith(b"{")]
    assert answers and answers[-1]["k"] == "nack" and "its event stream" in answers[-1]["error"], (answers, err)
    assert chain.stored(actor) == []


WRITER = """
import select, sys, time
import orjson
from theater import protocol
from theater.events import encode_data, event_hash
from theater.stream import Stream

# a worker's stream, written by hand: `pace` events a second, one a message, or (0) all it can
path, actor, pace = sys.argv[1], sys.argv[2], float(sys.argv[3])
sys.stdin.readline()                                    # bound by now
stream = Stream.connect(path, protocol.MAX_MESSAGE)
seq, head, acked, written, marks = 0, None, -1, -1, []
batch, next_at = (1 if pace else 256), time.monotonic()
while True:
    due = not stream.out and time.monotonic() >= next_at
    timeout = 0 if due else None if stream.out else next_at - time.monotonic()
    readable, writable, _ = select.select([sys.stdin, stream.sock], [stream.sock] if stream.out else [], [],
                                          max(0, timeout) if timeout is not None else None)
    if sys.stdin in readable:                           # closed: done
        break
    if stream.sock in readable:
        for frames in stream.receive():
            h = orjson.loads(frames[0])
            acked = max(acked, h["seq"]) if h["k"] == "ack" else acked
    if writable:
        stream.flush()
    if due:
        events = []
        for _ in range(batch):
            data = encode_data({"n": seq})
            head = event_hash(actor, seq, head, "test/event", data)
            events.append(({"seq": seq, "hash": head.hex(), "type": "test/event", "time_ns": time.time_ns()}, data))
            seq += 1
        header = {"k": "append", "actor": actor, "events": [m for m, _ in events], "sizes": [len(d) for _, d in events]}
        marks.append((stream.send(protocol.encode(header, b"".join(d for _, d in events))), seq - 1))
        next_at += batch / pace if pace else 0
    while marks and marks[0][0] <= stream.written:      # messages the kernel took whole
        written = marks.pop(0)[1]
print(orjson.dumps({"written": written, "acked": acked}).decode(), flush=True)
"""


def test_a_worker_writing_above_its_rate_is_slowed_by_the_chain(chain):
    """The worker is the untrusted side: one that does not slow itself (here: a process that
    writes its actor's events onto its stream as fast as it can) is read no faster than its
    actor's limits allow, with room to spare (chain.rates), neither refused nor losing anything,
    while another actor's events keep flowing, and the slowed one still hears its
    acknowledgements and has its queries answered. It is logged once, and counted."""
    rate = 200
    flooder, honest = str(uuid.uuid4()), str(uuid.uuid4())
    procs = {actor: subprocess.Popen([sys.executable, "-c", WRITER, str(chain.home.chain_stream), actor, pace],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
             for actor, pace in ((flooder, "0"), (honest, "50"))}
    reader = ChainReader(chain.home.chains_db)
    reports: dict[str, Any] = {}
    slowed = f"actor {flooder} (pid {procs[flooder].pid}) writes events faster than its limits allow"
    try:
        chain.send({"k": "bind", "actor": flooder, "pid": procs[flooder].pid, "events_per_second": rate})
        chain.send({"k": "bind", "actor": honest, "pid": procs[honest].pid, "events_per_second": 1000})
        assert chain.call({"k": "query", "what": "key"})[0]["k"] == "ok"      # the binds are taken
        for p in procs.values():
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        wait_for(lambda: slowed in chain.log.read_text(), timeout=60, what="the chain to slow the flooder")
        b = reader.length(honest)
        wait_for(lambda: reader.length(honest) > b, timeout=30, what="a commit after the flooder was slowed")
        t0, n0, b0 = time.monotonic(), reader.length(flooder), reader.length(honest)
        head = chain.call({"k": "query", "what": "head", "actor": flooder})[0]
        assert head["k"] == "ok" and head["checkpoint"]["seq"] >= n0 - 1, head
        wait_for(lambda: reader.length(honest) >= b0 + 100 and reader.length(flooder) > n0, timeout=120,
                 what="100 more events of the honest actor, and more of the flooder's")
        t1, n1 = time.monotonic(), reader.length(flooder)
    finally:
        for actor, p in procs.items():
            out, err = p.communicate(b"", timeout=60)
            assert p.returncode == 0, err.decode()
            reports[actor] = orjson.loads(out)
    # held to its rate: 1.25 times it and 20 a second, after a burst of two seconds of that (and
    # what one read takes past it): generously, twice the rate and ten seconds' worth
    assert n1 - n0 <= 2 * rate * (t1 - t0) + 10 * rate, (n1 - n0, t1 - t0)
    assert reports[flooder]["acked"] >= n0 - 1, (reports, n0)      # its acknowledgements came meanwhile
    log = chain.log.read_text()
    assert log.count("writes events faster than its limits allow") == 1, log    # once, and not the honest one
    assert chain.call({"k": "query", "what": "stats"})[0]["slowed"] == 1
    # nothing lost: once its worker is gone, the server's unbind has the chain take all it wrote
    chain.send({"k": "unbind", "actor": flooder})
    wait_for(lambda: reader.length(flooder) == reports[flooder]["written"] + 1, timeout=60,
             what="every event the flooder wrote to be stored")
    assert reader.length(honest) == reports[honest]["written"] + 1
    reader.close()


def _ask_then_bind(chain, actor: str, message: list[str],
                   before: Callable[[subprocess.Popen[bytes]], None] = lambda _p: None) -> tuple[bytes, bytes]:
    """A rogue process sends ``message`` (a header, and frames in hex) on the chain's ROUTER; the
    server then binds it as ``actor``'s worker (after ``before``); what it heard, and its stderr."""
    p = subprocess.Popen(rogue_command(None, "ask", chain.home.chain_endpoint, *message, "--wait", "20"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        before(p)
        chain.send({"k": "bind", "actor": actor, "pid": p.pid})
        return p.communicate(timeout=40)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()

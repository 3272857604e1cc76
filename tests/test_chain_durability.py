"""Chains under stress: a chain process or a whole server killed mid-stream, tampered stores
and exports, `events --follow` (resume with --since, filters, a stopped follower), checkpoints.

The actors are probes (tests/actors/probe.wat): "n<N>" logs "spam" N times in one call and
replies "logged", "e<x>" echoes. Their manifests are written here with a ``[limits]
events_per_second`` so a big "n" call lasts long enough to kill something in the middle.
Offline checks (verify, export, chains, key) need no server; they read $THEATER_HOME.
A reply leaves the worker once the chain has acknowledged its call's events; tests that
read the store while a request may still be in flight wait for its result event.

Tests that fail here on purpose are specs for product bugs (see the messages):
* `events --type T` without --follow matches T as a prefix (theater/chaindb.py), while
  --follow and the help text match it exactly unless it ends in "*";
* `verify --checkpoint F` without an ID holds every chain in the home to F (the others
  fail), and passes ("no chains") when F's chain was deleted altogether;
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from theater import keys
from theater.chaindb import ChainReader
from theater.events import Checkpoint, checkpoint_message, encode_data, event_hash, next_stamp
from theater.paths import Home

from .conftest import ACTORS, ROOT, Server, pid_alive, run_cli, wait_for

PROBE = ACTORS / "probe.wat"
LOG = "theater:simple/runtime/log"
HANDLE_REQUEST = "theater:simple/message-server-client.handle-request"
GONE_WITHIN = 5.0


# ---- helpers -----------------------------------------------------------------------------------------

def probe_manifest(folder: Path, name: str, events_per_second: int | None = None, call_timeout: str = "") -> Path:
    lines = [f"events_per_second = {events_per_second}"] * bool(events_per_second)
    lines += [f'call_timeout = "{call_timeout}"'] * bool(call_timeout)
    limits = "\n[limits]\n" + "\n".join(lines) + "\n" if lines else "\n"
    text = (f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{PROBE}"\n{limits}\n'
            '[[handler]]\ntype = "runtime"\n\n[[handler]]\ntype = "message-server"\n')
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def start(server: Server, manifest: Path) -> str:
    r = server.cli("start", str(manifest), "--json")
    assert r.code == 0, r.err
    return orjson.loads(r.out)["id"]


def length(home: Home, actor: str) -> int:
    """The stored chain's length, read straight from chains.db (0 if it has no row yet)."""
    reader = ChainReader(home.chains_db)
    try:
        return next((c.length for c in reader.chains() if c.actor_id == actor), 0)
    finally:
        reader.close()


def export(home: Home, actor: str) -> list[dict[str, Any]]:
    r = run_cli(home, "export", actor)
    assert r.code == 0, r.err
    return [orjson.loads(line) for line in r.out.splitlines()]


def assert_contiguous(evs: list[dict[str, Any]], first: int = 0) -> None:
    seqs = [e["seq"] for e in evs]
    assert seqs == list(range(first, first + len(evs))), _gaps(seqs, first)


def _gaps(seqs: list[int], first: int) -> str:
    dup = [s for s, n in Counter(seqs).items() if n > 1]
    missing = sorted(set(range(first, max(seqs, default=first) + 1)) - set(seqs))
    return f"{len(seqs)} seqs; duplicates {dup[:10]}; missing {missing[:10]}; first disorder at " + str(
        next((i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]), None))


def spam_count(evs: list[dict[str, Any]]) -> int:
    return sum(1 for e in evs if e["type"] == LOG and e["body"]["input"] == ["spam"])


def request_result(ev: dict[str, Any]) -> Any:
    """The reply of a handle-request result event, or None if ``ev`` is not one."""
    b = ev["body"]
    if ev["type"] == "wasm" and b.get("event") == "result" and b.get("function") == HANDLE_REQUEST:
        return b["result"]
    return None


def last_event(home: Home, actor: str) -> dict[str, Any] | None:
    reader = ChainReader(home.chains_db)
    try:
        n = next((c.length for c in reader.chains() if c.actor_id == actor), 0)
        return next((e.to_json() for e in reader.events(actor, since=n - 1)), None) if n else None
    finally:
        reader.close()


def wait_stored(home: Home, actor: str, reply: bytes, timeout: float = 15) -> int:
    """The seq of the last stored event, once it is the result of a request that replied ``reply``."""
    want = [{"utf8": reply.decode()}]

    def stored() -> int | None:
        ev = last_event(home, actor)
        return ev["seq"] if ev is not None and request_result(ev) == want else None
    return wait_for(stored, timeout=timeout, interval=0.05, what=f"the reply {reply!r} to be stored")


def stored_reply(home: Home, actor: str, reply: bytes, timeout: float = 15) -> list[dict[str, Any]]:
    """The whole export, once the request that replied ``reply`` is stored."""
    wait_stored(home, actor, reply, timeout)
    return export(home, actor)


def stored_counts(home: Home, actor: str) -> tuple[int, int, int]:
    """(rows, first seq, last seq) and the "spam" log events of a chain, counted in SQL."""
    db = sqlite3.connect(f"file:{home.chains_db}?mode=ro", uri=True)
    try:
        aid = db.execute("SELECT aid FROM actors WHERE actor = ?", (actor,)).fetchone()[0]
        rows, first, last = db.execute("SELECT count(*), min(seq), max(seq) FROM events WHERE aid = ?",
                                       (aid,)).fetchone()
        spam = db.execute("SELECT count(*) FROM events e JOIN types t ON t.tid = e.tid WHERE e.aid = ? "
                          "AND t.type = ? AND e.data = ?",
                          (aid, LOG, encode_data({"input": ["spam"], "output": None}))).fetchone()[0]
        return rows, last - first + 1 if rows else 0, spam
    finally:
        db.close()


def verify(home: Home, *args: str) -> tuple[int, str]:
    r = run_cli(home, "verify", *args)
    return r.code, r.text + r.err


def in_background(fn) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:      # reported by the test
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


class Follower:
    """`theater events ID --follow --json` as a subprocess; a thread collects its lines."""

    def __init__(self, home: Home, actor: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "theater", "--home", str(home.root), "events", actor, "--follow", "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=ROOT)
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.ended = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(orjson.loads(line))
        self.lines.put(None)

    def take_until(self, predicate, timeout: float = 20) -> list[dict[str, Any]]:
        """Collects events until ``predicate(event)`` holds for one; returns everything seen so far."""
        deadline = time.monotonic() + timeout
        while True:
            if self.seen and predicate(self.seen[-1]):
                return self.seen
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"follower: timed out; saw {len(self.seen)} events, last "
                                     f"{self.seen[-1]['seq'] if self.seen else None}; stderr: {self.stderr()}")
            try:
                item = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if item is None:
                self.ended = True
                raise AssertionError(f"follower exited ({self.proc.wait()}) after {len(self.seen)} events: "
                                     f"{self.stderr()}")
            self.seen.append(item)

    def until_seq(self, seq: int, timeout: float = 20) -> list[dict[str, Any]]:
        return self.take_until(lambda e: e["seq"] >= seq, timeout)

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(5)
        self.reader.join(5)


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    try:
        yield started
    finally:
        for f in started:
            f.kill()


# ---- 1. the chain process killed in the middle of a stream ------------------------------------------

def test_chain_process_sigkilled_mid_stream_loses_and_repeats_nothing(server, tmp_path):
    actor = start(server, probe_manifest(tmp_path, "spammer", events_per_second=2000))
    base = length(server.home, actor)
    old_chain = server.chain_pid()
    assert old_chain is not None
    server.remember()

    def call() -> bytes:
        with server.client(timeout=60) as c:
            return c.request(actor, b"n10000")
    thread, out = in_background(call)
    wait_for(lambda: base + 1500 < length(server.home, actor) < base + 7000, timeout=15, interval=0.02,
             what="the chain to hold part of the stream")
    at_kill = length(server.home, actor)
    psutil.Process(old_chain).kill()
    assert thread.is_alive(), "the call ended before the chain was killed"

    new_chain = wait_for(lambda: (p := server.chain_pid()) not in (None, old_chain) and p, timeout=15,
                         what="the server to start a new chain process")
    server.remember()
    thread.join(60)
    assert not thread.is_alive(), "the n10000 request did not return"
    assert "error" not in out, out.get("error")
    assert out["value"] == b"logged"
    assert pid_alive(new_chain)

    evs = stored_reply(server.home, actor, b"logged")

    assert_contiguous(evs)
    assert spam_count(evs) == 10_000
    assert sum(1 for e in evs if e["type"] == LOG) == 10_001           # and "probe init"
    assert request_result(evs[-1]) == [{"utf8": "logged"}]
    calls = [e for e in evs if e["type"] == "wasm" and e["body"]["event"] == "call"
             and e["body"]["function"] == HANDLE_REQUEST]
    assert len(calls) == 1
    # between the call and its result: the 10,000 spams and the throttling notes, nothing else
    inside = Counter(e["type"] for e in evs[calls[0]["seq"] + 1:-1])
    assert inside[LOG] == 10_000 and set(inside) <= {LOG, "limit/throttled"}, inside
    assert at_kill < evs[-1]["seq"]                              # the kill fell inside the stream
    code, text = verify(server.home, actor)
    assert code == 0, text
    # the actor still works, on the new chain process
    with server.client() as c:
        assert c.request(actor, b"eafter") == b"after"


# ---- 2. the server killed while its actors are busy --------------------------------------------------

def test_a_call_that_records_faster_than_a_stopped_chain_waits_for_it(server, tmp_path):
    """With the chain process stalled (SIGSTOP here; a slow disk in life), one long call's events
    piled up in its worker until the kernel killed it over its memory limit, and every event not
    yet handed to the chain was lost. The call now waits once MAX_UNACKED events wait for the
    chain (its heartbeats, which only a waiting worker sends during a call, show where it stopped),
    and finishes when the chain goes on, with every event stored."""
    from worker.chainlink import MAX_UNACKED

    n = 3 * MAX_UNACKED
    manifest = probe_manifest(tmp_path, "fast", events_per_second=100_000_000, call_timeout="300s")
    manifest.write_text(manifest.read_text().replace("[limits]\n", '[limits]\nevent_bytes_per_second = "1GiB"\n'))
    actor = start(server, manifest)
    chain = server.chain_pid()
    assert chain is not None
    os.kill(chain, signal.SIGSTOP)
    try:
        t, out = in_background(lambda: run_cli(server.home, "message", actor, f"n{n}", "--request", timeout=300))
        with server.client() as c:
            seen = wait_for(lambda: (e := c.inspect(actor)["stats"].get("events", 0)) >= MAX_UNACKED and e,
                            timeout=120, what=f"a heartbeat of the call waiting at {MAX_UNACKED} events")
        assert seen < MAX_UNACKED + 1000, seen      # not 3 x as many: it waits for the chain
    finally:
        os.kill(chain, signal.SIGCONT)
    t.join(300)
    assert out["value"].out == b"logged", out
    wait_stored(server.home, actor, b"logged", timeout=120)    # a reply waits for its events' write, not their commit
    rows, span, spam = stored_counts(server.home, actor)
    assert (spam, rows) == (n, span), (spam, rows, span)


@pytest.mark.parametrize("edit", ["copy", "copy, no event noted", "older event noted"])
def test_an_actor_resumes_from_the_state_its_chain_holds_not_an_edited_copy(server, tmp_path, edit):
    """The actors row keeps a copy of each actor's last state, signed by nothing: edited while the
    server was down, it was the state the actor resumed from, and its next lifecycle/start recorded
    it, signed; verify and replay passed. The state now comes from the event that set it, whose
    edit verify catches."""
    actor = start(server, probe_manifest(tmp_path, "bank"))
    with server.client() as c:
        assert c.request(actor, b"sbalance=1000000") == b"ok"
        assert c.request(actor, b"sbalance=10") == b"ok"
    wait_stored(server.home, actor, b"ok")
    server.stop()
    db = sqlite3.connect(server.home.chains_db)
    (seq,) = db.execute("SELECT state_seq FROM actors WHERE actor = ?", (actor,)).fetchone()
    if edit == "older event noted":        # the result that set balance=1000000: two events earlier
        db.execute("UPDATE actors SET state = ?, state_seq = ? WHERE actor = ?", (b"balance=1000000", seq - 2, actor))
    else:
        db.execute("UPDATE actors SET state = ? WHERE actor = ?", (b"balance=1000000", actor))
        if edit == "copy, no event noted":
            db.execute("UPDATE actors SET state_seq = NULL WHERE actor = ?", (actor,))
    db.commit()
    db.close()
    second = Server(server.home)
    try:
        second.start()
        with second.client() as c:
            wait_for(lambda: c.inspect(actor)["status"] == "running", timeout=20, what="the actor to be back")
            assert c.state(actor) == b"balance=10"
            assert c.request(actor, b"e") == b""
        assert "its stored state differs from the one its chain holds" in (server.home.logs / "server.log").read_text()
    finally:
        second.stop()


def test_server_sigkilled_while_busy_then_a_new_server_resumes_the_actors(server, tmp_path):
    # 500 events/s: a call of 5,000 lasts 10 s, so it is still running when the server is killed
    # even if the kill comes seconds late on a loaded machine (at 2,000/s it sometimes finished)
    actors = [start(server, probe_manifest(tmp_path, f"busy{i}", events_per_second=500)) for i in range(2)]
    with server.client() as c:
        for i, a in enumerate(actors):                       # a state to resume from
            assert c.request(a, f"sstate{i}".encode()) == b"ok"
    bases = {a: length(server.home, a) for a in actors}
    calls = [subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "message", a,
                               "n5000", "--request", "--timeout", "30"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT) for a in actors]
    try:
        wait_for(lambda: all(length(server.home, a) > bases[a] + 200 for a in actors), timeout=15, interval=0.02,
                 what="both actors to be logging")
        procs = server.descendants()
        server.remember()
        assert len([p for p in procs if "--actor" in " ".join(p.cmdline())]) == 2
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(5)
        _, alive = psutil.wait_procs(procs, timeout=GONE_WITHIN)
        alive = [p for p in alive if pid_alive(p.pid)]
        assert not alive, f"still running {time.monotonic() - t0:.1f}s after the server's SIGKILL: " + "; ".join(
            f"{p.pid} {' '.join(p.cmdline())}" for p in alive)
    finally:
        for p in calls:
            p.kill()
            p.wait()

    code, text = verify(server.home)
    assert code == 0, text
    before = {}
    for a in actors:
        evs = export(server.home, a)
        assert_contiguous(evs)
        assert evs[-1]["signature"]
        assert spam_count(evs) < 5000                 # cut off in the middle
        before[a] = evs
    for a in actors:
        assert (server.home.actors / f"{a}.json").exists()       # what the next server brings back

    second = Server(server.home)
    try:
        second.start()
        listed = {c["actor"]: c for c in orjson.loads(second.cli("chains", "--json").out)}
        for a in actors:
            assert a in listed, listed
            assert listed[a]["length"] >= len(before[a])

        def running() -> dict[str, Any] | None:
            r = second.cli("list", "--json")
            got = {x["id"]: x for x in orjson.loads(r.out)} if r.code == 0 else {}
            return got if all(got.get(a, {}).get("status") == "running" for a in actors) else None
        got = wait_for(running, timeout=20, interval=0.2, what="the new server to bring both actors back")
        second.remember()
        assert {got[a]["name"] for a in actors} == {"busy0", "busy1"}

        with second.client() as c:
            for i, a in enumerate(actors):
                assert c.request(a, b"e" + a.encode()) == a.encode()
                assert c.state(a) == f"state{i}".encode()
        for a in actors:
            evs = export(second.home, a)
            assert_contiguous(evs)
            assert evs[: len(before[a])] == before[a], "the stored chain changed under the new server"
            new = evs[len(before[a]):]
            types = [e["type"] for e in new]
            assert "lifecycle/start" in types, types
            i = types.index("lifecycle/start")
            assert set(types[:i]) <= {"lifecycle/exit"}, types
            assert new[i]["body"]["mode"] == "resume", new[i]["body"]
            assert new[i]["body"]["state"] == {"utf8": f"state{actors.index(a)}"}, new[i]["body"]
            assert request_result(evs[-1]) == [{"utf8": a}]
        code, text = verify(second.home)
        assert code == 0, text
    finally:
        second.stop()


# ---- 3 and 4. tampering, in the store and in an export ----------------------------------------------

class Pristine:
    """A stopped server's home holding one probe's chain with many signed batches, plus a
    checkpoint taken while it ran (so its chain grew past the checkpoint afterwards)."""

    def __init__(self, root: Path) -> None:
        self.home = Home(root / "home")
        self.checkpoint = root / "checkpoint.json"
        self.actor = ""
        self.pubkey = ""
        self.checkpoint_seq = -1


@pytest.fixture(scope="module")
def pristine() -> Iterator[Pristine]:
    root = Path(tempfile.mkdtemp(prefix="thp-", dir="/tmp"))
    p = Pristine(root)
    s = Server(p.home)
    try:
        s.start()
        p.actor = start(s, probe_manifest(root, "victim"))
        with s.client() as c:
            for i in range(12):
                assert c.request(p.actor, b"n3" if i % 2 else f"e{i}".encode()) in (b"logged", f"e{i}".encode()[1:])
        r = s.cli("chain", "head", p.actor, "--json")
        assert r.code == 0, r.err
        p.checkpoint.write_bytes(r.out)
        p.checkpoint_seq = orjson.loads(r.out)["seq"]
        with s.client() as c:
            for i in range(4):
                assert c.request(p.actor, f"e{i}".encode()) == str(i).encode()
        p.pubkey = s.cli("key").text.strip()
    finally:
        s.stop()
    yield p
    shutil.rmtree(root, ignore_errors=True)


def copy_home(pristine: Pristine, tmp_path: Path) -> Home:
    dest = tmp_path / "home"
    shutil.copytree(pristine.home.root, dest, ignore=shutil.ignore_patterns("*.sock"))
    return Home(dest)


def signed_seqs(evs: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in evs if e["signature"]]


def test_the_pristine_chain_verifies(pristine, tmp_path):
    home = copy_home(pristine, tmp_path)
    evs = export(home, pristine.actor)
    assert len(evs) > pristine.checkpoint_seq + 8
    assert len(signed_seqs(evs)) >= 5
    code, text = verify(home, pristine.actor, "--checkpoint", str(pristine.checkpoint))
    assert code == 0, text
    f = tmp_path / "chain.jsonl"
    assert run_cli(home, "export", pristine.actor, "-o", str(f)).code == 0
    code, text = verify(home, "--file", str(f), "--pubkey", pristine.pubkey, "--checkpoint", str(pristine.checkpoint))
    assert code == 0, text


# Each tampering returns the seq of the event `verify` must name. ``evs`` is the untouched export.

def _rows(db: sqlite3.Connection, aid: int) -> list[list[Any]]:
    return [list(r) for r in db.execute(
        "SELECT aid, seq, tid, data, hash, time_ns, sig FROM events WHERE aid = ? ORDER BY seq", (aid,))]


def _rewrite(db: sqlite3.Connection, aid: int, rows: list[list[Any]]) -> None:
    db.execute("DELETE FROM events WHERE aid = ?", (aid,))
    db.executemany("INSERT INTO events (aid, seq, tid, data, hash, time_ns, sig) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def _middle_spam(evs: list[dict[str, Any]]) -> int:
    spams = [e["seq"] for e in evs if e["body"].get("input") == ["spam"]]
    return spams[len(spams) // 2]


def db_changed_data(db, aid, actor, evs) -> int:
    k = _middle_spam(evs)
    db.execute("UPDATE events SET data = ? WHERE aid = ? AND seq = ?",
               (encode_data({"input": ["eggs"], "output": None}), aid, k))
    return k


def db_changed_type(db, aid, actor, evs) -> int:
    k = _middle_spam(evs)
    other = db.execute("SELECT tid FROM types WHERE type = 'wasm'").fetchone()[0]
    db.execute("UPDATE events SET tid = ? WHERE aid = ? AND seq = ?", (other, aid, k))
    return k


def db_removed(db, aid, actor, evs) -> int:
    k = _middle_spam(evs)
    db.execute("DELETE FROM events WHERE aid = ? AND seq = ?", (aid, k))
    return k


def db_inserted(db, aid, actor, evs) -> int:
    """A well-formed event at k (right seq, parent and hash): the first event it breaks is the next one."""
    k = _middle_spam(evs)
    rows = _rows(db, aid)
    prev = rows[k - 1]
    data = encode_data({"input": ["forged"], "output": None})
    log_tid = db.execute("SELECT tid FROM types WHERE type = ?", (LOG,)).fetchone()[0]
    fake = [aid, k, log_tid, data, event_hash(actor, k, prev[4], LOG, data), prev[5] + 1, None]
    rows = rows[:k] + [fake] + [[r[0], r[1] + 1, *r[2:]] for r in rows[k:]]
    _rewrite(db, aid, rows)
    return k + 1


def db_reordered(db, aid, actor, evs) -> int:
    k = _middle_spam(evs)
    rows = _rows(db, aid)
    rows[k][1], rows[k + 2][1] = rows[k + 2][1], rows[k][1]
    _rewrite(db, aid, sorted(rows, key=lambda r: r[1]))
    return k


def db_other_key(db, aid, actor, evs) -> int:
    s = signed_seqs(evs)[len(signed_seqs(evs)) // 2]
    e = evs[s]
    sig = Ed25519PrivateKey.generate().sign(
        checkpoint_message(actor, s, bytes.fromhex(e["hash"]), bytes.fromhex(e["stamp"])))
    db.execute("UPDATE events SET sig = ? WHERE aid = ? AND seq = ?", (sig, aid, s))
    return s


def db_changed_time(db, aid, actor, evs) -> int:
    """The store keeps no per-event stamps (they are recomputed when read), so a changed time
    shows at the next signature, whose checkpoint covers the old stamp (docs/chain-format.md)."""
    k = _middle_spam(evs)
    db.execute("UPDATE events SET time_ns = time_ns + 1 WHERE aid = ? AND seq = ?", (aid, k))
    return min(s for s in signed_seqs(evs) if s >= k)


def db_unsigned_tail(db, aid, actor, evs) -> int:
    signed = signed_seqs(evs)
    assert signed[-1] == len(evs) - 1
    db.execute("UPDATE events SET sig = NULL WHERE aid = ? AND seq = ?", (aid, signed[-1]))
    return signed[-2] + 1


def db_cut_tail(db, aid, actor, evs) -> int:
    """Events deleted from the end back to a signed one, the store's record of the head left as
    it was (red-team finding: verify said ok, 10 of 15 events)."""
    cut = max(s for s in signed_seqs(evs) if s < len(evs) - 3)
    db.execute("DELETE FROM events WHERE aid = ? AND seq > ?", (aid, cut))
    return cut + 1


def db_emptied(db, aid, actor, evs) -> int:
    db.execute("DELETE FROM events WHERE aid = ?", (aid,))
    return 0


def db_other_head(db, aid, actor, evs) -> int:
    """The store's record of the head changed, the events left as they are."""
    db.execute("UPDATE actors SET hash = ? WHERE aid = ?", (b"\0" * 32, aid))
    return len(evs) - 1


DB_TAMPERINGS = [db_changed_data, db_changed_type, db_removed, db_inserted, db_reordered, db_other_key,
                 db_changed_time, db_unsigned_tail, db_cut_tail, db_emptied, db_other_head]


@pytest.mark.parametrize("tamper", DB_TAMPERINGS, ids=lambda f: f.__name__)
def test_verify_names_the_tampered_event_in_the_store(pristine, tmp_path, tamper):
    home = copy_home(pristine, tmp_path)
    evs = export(home, pristine.actor)
    db = sqlite3.connect(home.chains_db, isolation_level=None)
    try:
        aid = db.execute("SELECT aid FROM actors WHERE actor = ?", (pristine.actor,)).fetchone()[0]
        db.execute("BEGIN")
        bad = tamper(db, aid, pristine.actor, evs)
        db.execute("COMMIT")
    finally:
        db.close()
    code, text = verify(home, pristine.actor)
    assert code == 5, text
    assert f"event {bad}:" in text, (bad, text)
    r = run_cli(home, "verify", "--json")
    assert r.code == 5
    report = {x["actor"]: x for x in orjson.loads(r.out)}[pristine.actor]
    assert report["ok"] is False and report["seq"] == bad, report


def test_a_truncated_store_passes_alone_and_fails_against_a_later_checkpoint(pristine, tmp_path):
    home = copy_home(pristine, tmp_path)
    evs = export(home, pristine.actor)
    cut = max(s for s in signed_seqs(evs) if s < pristine.checkpoint_seq - 3)     # the new last event
    db = sqlite3.connect(home.chains_db, isolation_level=None)
    try:
        aid = db.execute("SELECT aid FROM actors WHERE actor = ?", (pristine.actor,)).fetchone()[0]
        db.execute("DELETE FROM events WHERE aid = ? AND seq > ?", (aid, cut))
        db.execute("UPDATE actors SET seq = ?, hash = ?, stamp = ? WHERE aid = ?",
                   (cut, bytes.fromhex(evs[cut]["hash"]), bytes.fromhex(evs[cut]["stamp"]), aid))
    finally:
        db.close()
    code, text = verify(home, pristine.actor)
    assert code == 0, text                                    # no verifier can tell without a later checkpoint
    assert f"{cut + 1} events" in text
    code, text = verify(home, pristine.actor, "--checkpoint", str(pristine.checkpoint))
    assert code == 5, text
    assert f"event {cut + 1}:" in text, text


def test_a_deleted_chain_fails_against_its_checkpoint(pristine, tmp_path):
    """Emptied (events gone, the actor's row kept) or removed altogether: a verifier holding a
    checkpoint must not be told all is well."""
    home = copy_home(pristine, tmp_path)
    db = sqlite3.connect(home.chains_db, isolation_level=None)
    try:
        aid = db.execute("SELECT aid FROM actors WHERE actor = ?", (pristine.actor,)).fetchone()[0]
        db.execute("DELETE FROM events WHERE aid = ?", (aid,))
    finally:
        db.close()
    code, text = verify(home, pristine.actor, "--checkpoint", str(pristine.checkpoint))
    assert code == 5, text
    assert "event 0:" in text, text

    db = sqlite3.connect(home.chains_db, isolation_level=None)
    try:
        db.execute("DELETE FROM actors WHERE aid = ?", (aid,))
    finally:
        db.close()
    code, text = verify(home, pristine.actor, "--checkpoint", str(pristine.checkpoint))
    assert code != 0, text
    code, text = verify(home, "--checkpoint", str(pristine.checkpoint))      # every chain in the home
    assert code == 5, f"the checkpoint's chain is gone, yet verify says: {code} {text!r}"
    assert pristine.actor in text, text


def file_changed_data(lines: list[dict[str, Any]], pubkey_unused: str) -> int:
    k = _middle_spam(lines)
    lines[k]["data"] = base64.b64encode(encode_data({"input": ["eggs"], "output": None})).decode()
    return k


def file_changed_type(lines, _) -> int:
    k = _middle_spam(lines)
    lines[k]["type"] = "wasm"
    return k


def file_removed(lines, _) -> int:
    k = _middle_spam(lines)
    del lines[k]
    return k


def file_inserted(lines, _) -> int:
    """A consistent event at k (seq, parent, hash, stamp all right); the old event k, now k+1,
    still names its old parent."""
    k = _middle_spam(lines)
    prev = lines[k - 1]
    data = encode_data({"input": ["forged"], "output": None})
    h = event_hash(prev["actor"], k, bytes.fromhex(prev["hash"]), LOG, data)
    t = prev["time_ns"] + 1
    fake = {**prev, "seq": k, "type": LOG, "parent": prev["hash"], "hash": h.hex(), "time_ns": t,
            "stamp": next_stamp(bytes.fromhex(prev["stamp"]), h, t).hex(), "signature": None,
            "data": base64.b64encode(data).decode()}
    for e in lines[k:]:
        e["seq"] += 1
    lines.insert(k, fake)
    return k + 1


def file_reordered(lines, _) -> int:
    k = _middle_spam(lines)
    lines[k], lines[k + 1] = lines[k + 1], lines[k]
    return k


def file_reordered_renumbered(lines, _) -> int:
    """Swapped, with the seq fields swapped back so the numbers still run 0, 1, 2, ..."""
    k = _middle_spam(lines)
    lines[k], lines[k + 1] = lines[k + 1], lines[k]
    lines[k]["seq"], lines[k + 1]["seq"] = k, k + 1
    return k


def file_other_key(lines, _) -> int:
    signed = signed_seqs(lines)
    s = signed[len(signed) // 2]
    e = lines[s]
    e["signature"] = Ed25519PrivateKey.generate().sign(
        checkpoint_message(e["actor"], s, bytes.fromhex(e["hash"]), bytes.fromhex(e["stamp"]))).hex()
    return s


def file_changed_time(lines, _) -> int:
    k = _middle_spam(lines)
    lines[k]["time_ns"] += 1
    return k


FILE_TAMPERINGS = [file_changed_data, file_changed_type, file_removed, file_inserted, file_reordered,
                   file_reordered_renumbered, file_other_key, file_changed_time]


@pytest.mark.parametrize("tamper", FILE_TAMPERINGS, ids=lambda f: f.__name__)
def test_verify_names_the_tampered_event_in_an_export(pristine, tmp_path, tamper):
    home = copy_home(pristine, tmp_path)
    f = tmp_path / "chain.jsonl"
    r = run_cli(home, "export", pristine.actor, "-o", str(f))
    assert r.code == 0, r.err
    key = run_cli(home, "key").text.strip()
    assert key == pristine.pubkey
    lines = [orjson.loads(x) for x in f.read_bytes().splitlines()]
    bad = tamper(lines, key)
    f.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    code, text = verify(home, "--file", str(f), "--pubkey", key)
    assert code == 5, text
    assert f"event {bad}:" in text, (bad, text)


def test_a_truncated_export_passes_alone_and_fails_against_a_later_checkpoint(pristine, tmp_path):
    home = copy_home(pristine, tmp_path)
    lines = export(home, pristine.actor)
    cut = max(s for s in signed_seqs(lines) if s < pristine.checkpoint_seq - 3)
    f = tmp_path / "chain.jsonl"
    f.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines[: cut + 1]))
    code, text = verify(home, "--file", str(f), "--pubkey", pristine.pubkey)
    assert code == 0, text
    code, text = verify(home, "--file", str(f), "--pubkey", pristine.pubkey, "--checkpoint", str(pristine.checkpoint))
    assert code == 5, text
    assert f"event {cut + 1}:" in text, text
    # an unsigned tail is caught even without a checkpoint
    f.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines[: cut + 2]))
    code, text = verify(home, "--file", str(f), "--pubkey", pristine.pubkey)
    assert code == 5, text
    assert f"event {cut + 1}:" in text, text


# ---- 5. events --follow ------------------------------------------------------------------------------

def test_follow_resume_since_type_and_limit(server, tmp_path, followers):
    actor = start(server, probe_manifest(tmp_path, "chatty"))
    home = server.home
    with server.client() as c:
        assert c.request(actor, b"e0") == b"0"
        f1 = Follower(home, actor)
        followers.append(f1)
        f1.until_seq(stored_reply(home, actor, b"0")[-1]["seq"])          # the stored ones
        for i in range(1, 6):                                               # then live ones
            assert c.request(actor, f"e{i}".encode()) == str(i).encode()
        assert c.request(actor, b"n20") == b"logged"
        stored = stored_reply(home, actor, b"logged")
        seen = f1.until_seq(stored[-1]["seq"])
        assert_contiguous(seen)
        assert seen == stored, "the follower's events differ from the stored ones"
        f1.kill()

        # missed while no one followed: first those, in order, then live ones
        nxt = len(seen)
        for i in range(6, 9):
            assert c.request(actor, f"e{i}".encode()) == str(i).encode()
        missed = stored_reply(home, actor, b"8")[nxt:]
        assert len(missed) >= 6
        f2 = Follower(home, actor, "--since", str(nxt))
        followers.append(f2)
        got = f2.until_seq(missed[-1]["seq"])
        assert got == missed
        for i in range(9, 12):
            assert c.request(actor, f"e{i}".encode()) == str(i).encode()
        stored = stored_reply(home, actor, b"11")
        got = f2.until_seq(stored[-1]["seq"])
        assert_contiguous(got, nxt)
        assert got == stored[nxt:]

        # --type: only log events, stored and live
        f3 = Follower(home, actor, "--type", LOG)
        followers.append(f3)
        logs = [e for e in stored if e["type"] == LOG]
        f3.until_seq(logs[-1]["seq"])
        assert c.request(actor, b"n3") == b"logged"
        logs = [e for e in stored_reply(home, actor, b"logged") if e["type"] == LOG]
        got = f3.until_seq(logs[-1]["seq"])
        assert got == logs
        assert len(got) == 1 + 20 + 3

    # --limit 3: exits by itself after three events
    r = run_cli(home, "events", actor, "--follow", "--json", "--limit", "3", "--since", "2", timeout=20)
    assert r.code == 0, r.err
    got = [orjson.loads(x) for x in r.out.splitlines()]
    assert [e["seq"] for e in got] == [2, 3, 4]
    # --limit with --type counts matching events only
    r = run_cli(home, "events", actor, "--follow", "--json", "--limit", "3", "--type", LOG, timeout=20)
    assert r.code == 0, r.err
    assert [orjson.loads(x) for x in r.out.splitlines()] == logs[:3]
    # a type without a trailing * is matched exactly, stored (no --follow) as when following
    lifecycle = [e for e in export(home, actor) if e["type"].startswith("lifecycle/")]
    assert lifecycle and lifecycle[0]["type"] == "lifecycle/start"
    r = run_cli(home, "events", actor, "--json", "--type", "lifecycle/*")
    assert r.code == 0, r.err
    assert orjson.loads(r.out) == lifecycle
    r = run_cli(home, "events", actor, "--json", "--type", "lifecycle/start")
    assert orjson.loads(r.out) == lifecycle[:1]
    r = run_cli(home, "events", actor, "--json", "--type", "lifecycle")
    assert r.code == 0, r.err
    assert [e["type"] for e in orjson.loads(r.out)] == [], "--type lifecycle (no *) matched as a prefix"
    r = run_cli(home, "events", actor, "--json", "--type", "theater:simple/runtime")
    assert [e["type"] for e in orjson.loads(r.out)] == [], "--type (no *) matched as a prefix"


# ---- 6. a stopped follower blocks nobody ------------------------------------------------------------

# The server queues up to 100,000 pushes per client (its management socket's SNDHWM); past
# that it drops them and counts them as missed. 50,000 stays inside that queue; 150,000 does
# not, so the follower must notice the loss and catch up from the store.
@pytest.mark.timeout(600)         # 150,000 events through a loaded 2-core host take minutes, not seconds
@pytest.mark.parametrize("calls", [1, 3], ids=["queued-50k", "dropped-150k"])
def test_a_stopped_follower_blocks_neither_the_actor_nor_the_chain(server, tmp_path, followers, calls):
    # a call of 50,000 events takes ~2 s of CPU; on a loaded machine, far longer than that
    actor = start(server, probe_manifest(tmp_path, "firehose", events_per_second=1_000_000, call_timeout="150s"))
    home = server.home
    # no timed assertions: a follower that blocked the actor or the chain would leave these
    # requests unanswered (their bound is the client's timeout, generous for a loaded machine)
    with server.client(timeout=180) as c:
        assert c.request(actor, b"ehi") == b"hi"
        f = Follower(home, actor)
        followers.append(f)
        f.until_seq(wait_stored(home, actor, b"hi"))                     # following live now
        f.proc.send_signal(signal.SIGSTOP)
        try:
            for _ in range(calls):
                assert c.request(actor, b"n50000") == b"logged"
            last = wait_stored(home, actor, b"logged")
            assert stored_counts(home, actor) == (last + 1, last + 1, 50_000 * calls)      # no gaps
            assert f.proc.poll() is None
            assert psutil.Process(f.proc.pid).status() == psutil.STATUS_STOPPED
            # the actor still answers while the follower sleeps
            assert c.request(actor, b"estill") == b"still"
        finally:
            f.proc.send_signal(signal.SIGCONT)
        end = wait_stored(home, actor, b"still")
        # reading 100,000 queued events, then catching up on the rest, takes a while when loaded
        got = f.until_seq(end, timeout=90)
    seqs = [e["seq"] for e in got]
    assert seqs == list(range(len(seqs))), _gaps(seqs, 0)
    assert sum(1 for e in got if e["body"].get("input") == ["spam"]) == 50_000 * calls


# ---- 7. checkpoints ---------------------------------------------------------------------------------

def test_chain_head_is_a_checkpoint_signed_by_the_host_key(server, tmp_path):
    actor = start(server, probe_manifest(tmp_path, "headed"))
    with server.client() as c:
        assert c.request(actor, b"n5") == b"logged"
    r = server.cli("chain", "head", actor, "--json")
    assert r.code == 0, r.err
    doc = orjson.loads(r.out)
    assert set(doc) == {"actor", "length", "seq", "head", "stamp", "signature"}, doc
    assert doc["actor"] == actor
    assert doc["length"] == doc["seq"] + 1
    key = server.cli("key").text.strip()
    cp = Checkpoint.from_json(doc)
    assert cp.verify(keys.parse_public(key))
    assert not cp.verify(Ed25519PrivateKey.generate().public_key())
    evs = export(server.home, actor)
    assert len(evs) >= doc["length"]
    assert evs[doc["seq"]]["hash"] == doc["head"]
    assert evs[doc["seq"]]["stamp"] == doc["stamp"]
    # also by name
    assert orjson.loads(server.cli("chain", "head", "headed", "--json").out)["actor"] == actor

    cpfile = tmp_path / "cp.json"
    cpfile.write_bytes(r.out)
    code, text = verify(server.home, actor, "--checkpoint", str(cpfile))
    assert code == 0, text
    with server.client() as c:                                  # the chain grows: still consistent
        assert c.request(actor, b"emore") == b"more"
    code, text = verify(server.home, actor, "--checkpoint", str(cpfile))
    assert code == 0, text
    f = tmp_path / "x.jsonl"
    assert run_cli(server.home, "export", actor, "-o", str(f)).code == 0
    code, text = verify(server.home, "--file", str(f), "--pubkey", key, "--checkpoint", str(cpfile))
    assert code == 0, text
    # a checkpoint signed by another key is refused
    forged = {**doc, "signature": Ed25519PrivateKey.generate().sign(cp.message()).hex()}
    bad = tmp_path / "forged.json"
    bad.write_bytes(orjson.dumps(forged))
    code, text = verify(server.home, actor, "--checkpoint", str(bad))
    assert code == 5, text
    # without an ID every chain is verified, and the checkpoint holds its own actor's chain only
    other = start(server, probe_manifest(tmp_path, "bystander"))
    with server.client() as c:
        assert c.request(other, b"ehello") == b"hello"
    code, text = verify(server.home, "--checkpoint", str(cpfile))
    assert code == 0, text
    assert f"ok      {actor}" in text and f"ok      {other}" in text, text

"""Records edited by someone who can write the home (chains.db, an export file): the chain
resumes no actor from a row its chain does not hold, ``verify`` and ``export`` name a malformed
row instead of crashing, and ``replay`` neither loads what an edited record points at nor
replays a resume from a state its calls did not leave (red-team findings, 2026-12-03)."""

from __future__ import annotations

import base64
import sqlite3

import cbor2
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from theater.events import encode_data, event_hash

from .conftest import ACTORS, EXAMPLES, ROOT, cli_start, run_cli, running, wait_for

COUNTER = EXAMPLES / "counter" / "manifest.toml"
MiB = 1 << 20
FN = "theater:simple/message-server-client.handle-request"


def test_a_row_beside_the_chain_is_no_state_to_resume_from(tmp_path):
    """SQLite sorts a blob or text seq above every number, and a negative one is in no read of
    the chain: a row added with either, holding a forged state, was the state resumed from."""
    from chain.store import ChainStore

    path, key = tmp_path / "chains.db", Ed25519PrivateKey.generate()
    store = ChainStore(path, key)
    head = None
    for seq in range(3):
        data = encode_data({"event": "result", "state": bytes([seq]), "result": [], "function": FN})
        head = event_hash("a", seq, head, "wasm", data)
        store.stage("a", {"seq": seq, "hash": head.hex(), "type": "wasm", "time_ns": 1, "state": 1}, data)
    store.commit()
    store.close()
    forged = encode_data({"event": "result", "state": b"5000", "result": [], "function": FN})
    db = sqlite3.connect(path)
    for seq in (b"\x00", "zz", -1):
        db.execute("INSERT INTO events SELECT aid, ?, tid, ?, hash, 0, NULL FROM events WHERE seq = 0", (seq, forged))
    db.commit()
    db.close()
    store = ChainStore(path, key)
    assert (store.head("a").state, store.head("a").state_seq) == (b"\x02", 2)
    store.close()


def _counter_home(home) -> str:
    with running(home) as server:
        actor = cli_start(server, COUNTER)
        for _ in range(2):
            assert server.cli("message", actor, "+1", "--request").code == 0
    return actor


def _forged(home, actor: str, path, which, change) -> int:
    """Writes ``actor``'s export to ``path`` with ``change`` made to the data of the first
    event ``which(record)`` picks, every hash after it recomputed (as a forger would: replay
    checks links, not signatures); that event's seq."""
    assert run_cli(home, "export", actor, "-o", str(path)).code == 0
    return _edited(path, which, change)


def _edited(path, which, change) -> int:
    """``_forged`` on an export already in ``path``."""
    recs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    chosen, parent = None, None
    for r in recs:
        if chosen is None and which(r):
            body = cbor2.loads(base64.b64decode(r["data"]))
            change(body)
            r["data"] = base64.b64encode(cbor2.dumps(body, canonical=True)).decode()
            chosen = r["seq"]
        r["parent"] = parent.hex() if parent else None
        parent = event_hash(r["actor"], r["seq"], parent, r["type"], base64.b64decode(r["data"]))
        r["hash"] = parent.hex()
    assert chosen is not None
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in recs))
    return chosen


def test_verify_and_export_name_a_malformed_row_and_count_rows_beside_the_chain(home):
    """They crashed with a traceback on a column of the wrong type, and verify said ok with a
    row beside the chain (a negative seq no read reaches)."""
    actor = _counter_home(home)
    db_path = home.chains_db
    original = db_path.read_bytes()
    wrong_type = "a stored column is not of its type"
    for edit, verify_says, export_says in (
            ("UPDATE events SET seq = X'00' WHERE seq = 1", "event 1: missing", "seq is b'\\x00', not an integer"),
            ("UPDATE events SET time_ns = 'abc' WHERE seq = 1", wrong_type, wrong_type),
            ("UPDATE events SET hash = hex(hash) WHERE seq = 1", wrong_type, wrong_type),
            ("UPDATE events SET sig = 'x' WHERE sig IS NOT NULL", wrong_type, wrong_type),
            ("INSERT INTO events SELECT aid, -1, tid, data, hash, time_ns, NULL FROM events WHERE seq = 0",
             "rows were added beside it", None)):         # export reads the chain, not what is beside it
        db_path.write_bytes(original)
        for wal in (home.root / "chains.db-wal", home.root / "chains.db-shm"):
            wal.unlink(missing_ok=True)
        db = sqlite3.connect(db_path)
        db.execute(edit)
        db.commit()
        db.close()
        for command, said in ((("verify",), verify_says), (("export", actor, "-o", str(home.root / "o.jsonl")),
                                                           export_says)):
            if said is None:
                continue
            r = run_cli(home, *command)
            text = (r.out.decode() + r.err).strip()
            assert r.code == 5 and "Traceback" not in text, (edit, command, r)
            assert len(text.splitlines()) == 1 and said in text, (edit, command, text)


def test_replay_takes_no_component_path_and_no_edited_start_from_a_record(home, tmp_path):
    actor = _counter_home(home)
    evil, forged = tmp_path / "evil", tmp_path / "forged.jsonl"
    _forged(home, actor, forged, lambda r: r["seq"] == 0, lambda b: b.update(component=str(evil / "x")))
    r = run_cli(home, "replay", "--file", str(forged), "--json")
    report = orjson.loads(r.out)
    assert r.code == 5 and report["seq"] == 0 and "not by its SHA-256" in report["error"], r
    assert not evil.exists() and not list(tmp_path.glob("evil*"))
    # an edit left with its old hash is caught before anything runs
    out = tmp_path / "counter.jsonl"
    assert run_cli(home, "export", actor, "-o", str(out)).code == 0
    edited = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    edited[0]["data"] = base64.b64encode(cbor2.dumps({"mode": "init", "state": b"1000"}, canonical=True)).decode()
    out.write_bytes(b"\n".join(orjson.dumps(r) for r in edited))
    r = run_cli(home, "replay", "--file", str(out), "--json")
    assert r.code == 5 and "is not the one its hash says" in orjson.loads(r.out)["error"], r


def test_replay_refuses_a_resume_from_a_state_its_calls_did_not_leave(home, tmp_path):
    """A chain whose store was edited made the actor resume from an older (or forged) state: the
    signed lifecycle/start holds it, and the calls before it say otherwise."""
    actor = _counter_home(home)
    with running(home) as server:           # the next server resumes it: a lifecycle/start "resume"
        wait_for(lambda: server.cli("message", actor, "+1", "--request").out == b"3", timeout=60,
                 what="the counter back, at 3")
    assert run_cli(home, "replay", actor).code == 0
    forged = tmp_path / "rolled-back.jsonl"
    resumed = _forged(home, actor, forged, lambda r: r["type"] == "lifecycle/start" and r["body"]["mode"] == "resume",
                      lambda b: b.update(state=b"1"))      # an older state than the calls before it left
    r = run_cli(home, "replay", "--file", str(forged), "--component", str(EXAMPLES / "counter" / "counter.wat"),
                "--json")
    report = orjson.loads(r.out)
    assert r.code == 5 and report["seq"] == resumed and "resumes from the state" in report["error"], r


def test_verify_of_a_file_stops_at_its_first_bad_event_without_reading_the_rest(home, tmp_path):
    """verify --file read the whole file before checking anything (53 MB of bogus records:
    279 MB and 9 s to refuse the first). It now reads event by event: fed by a pipe that never
    ends, it still names the first bad event and exits."""
    import os
    import threading

    vectors = ROOT / "tests" / "vectors"

    fifo = tmp_path / "endless.jsonl"
    os.mkfifo(fifo)
    bad = {"actor": "a", "seq": 3, "type": "t", "hash": "00" * 32, "parent": None, "time_ns": 1,
           "stamp": "00" * 32, "signature": None, "data": ""}
    done = threading.Event()

    def feed() -> None:
        with open(fifo, "wb") as f:         # the first record, then silence: the pipe stays open
            f.write(orjson.dumps(bad) + b"\n")
            f.flush()
            done.wait(120)
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        r = run_cli(home, "verify", "--file", str(fifo), "--pubkey", str(vectors / "chain-v1.pub"), timeout=60)
    finally:
        done.set()
        writer.join(10)
    assert r.code == 5 and b"event 0" in r.out + r.err.encode(), r


def test_a_component_whose_start_never_ends_is_stopped_in_replay(home, tmp_path):
    """Red-team finding (read, not run): replay instantiated a component with no time limit, so a
    start function that loops held it until the CLI's 600 s. It is stopped as a call is."""
    actor = _counter_home(home)
    looping = tmp_path / "looping.wat"                  # the counter, its module's start a loop
    text = (EXAMPLES / "counter" / "counter.wat").read_text()
    last_import = '(import "rt" "log" (func $log (param i32 i32)))\n'
    assert text.count(last_import) == 1 and "(start" not in text
    looping.write_text(text.replace(last_import, last_import + "(func $spin (loop br 0)) (start $spin)\n"))
    r = run_cli(home, "replay", actor, "--component", str(looping), "--json", "--timeout", "120")
    assert r.out, r
    report = orjson.loads(r.out)
    assert r.code == 5 and "instantiation runs past" in report["error"], r


def test_a_replay_is_held_to_the_process_memory_its_record_says(server, tmp_path):
    """Red-team finding: replay ran a component with no memory limit, so a record forged to make
    it grow its memory (here "g", which writes to every page it gets, for the "eok" the actor
    was sent) had the replayer take the host's. Held to the process memory its record says
    (96MiB beyond what the replayer holds with the component loaded), it stops there and says
    so in one line, exit 1: not a divergence, not a crash. A record that claims more than half
    the memory the machine has free is held to that; one whose limits are no such values is
    refused at its start."""
    manifest = tmp_path / "grows.toml"
    manifest.write_text((ACTORS / "probe.toml").read_text().replace('component = "probe.wat"', f'component = '
                        f'"{ACTORS / "probe.wat"}"') + '\n[limits]\nmemory = "1GiB"\nprocess_memory = "96MiB"\n')
    with server.client() as c:
        actor = c.start(manifest)["id"]
        assert c.request(actor, b"eok") == b"ok"

    def is_eok(r) -> bool:
        return r["type"] == "wasm" and r["body"]["event"] == "call" and r["body"]["params"][1:] == [{"utf8": "eok"}]
    forged = tmp_path / "grows.jsonl"
    call = _forged(server.home, actor, forged, is_eok, lambda b: b["params"].__setitem__(1, b"g"))
    r = run_cli(server.home, "replay", "--file", str(forged), "--json", timeout=120)
    report = orjson.loads(r.out)
    assert r.code == 1 and report["limit"] == "process_memory" and report["seq"] == call + 1, r
    assert "process memory limit (the record's): 100663296 bytes more" in report["error"], report
    human = run_cli(server.home, "replay", "--file", str(forged), timeout=120)
    text = (human.out.decode() + human.err).strip()
    assert human.code == 1 and len(text.splitlines()) == 1 and text.startswith("LIMIT"), human

    # limits claimed beyond what the machine has are held to half its free memory (the linear
    # memory, 64MiB here, stops the probe first); limits that are no such values are refused
    claims = tmp_path / "claims.jsonl"
    for limits, code, limit, said in (
            ({"fuel": 0, "memory": 64 * MiB, "process_memory": 1 << 50}, 1, "memory", "held to half the memory"),
            ({"fuel": 0, "memory": 8 << 30, "process_memory": 96 * MiB}, 5, None, "limits say memory = 8589934592"),
            ({"fuel": -1, "memory": 64 * MiB, "process_memory": 96 * MiB}, 5, None, "limits say fuel = -1")):
        claims.write_bytes(forged.read_bytes())
        start = _edited(claims, lambda r: r["type"] == "lifecycle/start", lambda b, x=limits: b.update(limits=x))
        r = run_cli(server.home, "replay", "--file", str(claims), "--json", timeout=120)
        report = orjson.loads(r.out)
        assert r.code == code and report.get("limit") == limit and said in report["error"], r
        assert report["seq"] == (call + 1 if limit else start), report

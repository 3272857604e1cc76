"""Event data a worker wrote, whatever it holds, is shown as what it is: a worker writes its
own events' data, and one that escaped its sandbox may write anything the chain accepts. The
chain stays valid (``verify`` judges it); the readers (`logs`, `inspect`, `events`, `export`,
`chains`, the console) neither fail nor print a traceback (audit: `logs`, `inspect` and
`export` did, and the console's chain page)."""

from __future__ import annotations

import cbor2
import orjson
import pytest

from theater import keys
from theater.events import Event, event_hash

from .conftest import run_cli

NOT_CBOR = b"\xff\xfe\xfd not cbor"     # a break code where a value belongs
ODD = [
    NOT_CBOR,
    cbor2.dumps([1, 2, 3]),                             # a list where a map is meant
    cbor2.dumps(7),                                     # a number
    cbor2.dumps({"input": 5, "manifest": 5, "kind": "abnormal", "error": 5}),   # fields of other types
    cbor2.dumps({"input": [[1]]}),                      # a log line that is a list
    b"\x81" * 300 + b"\x00",                            # nested deeper than JSON encoders go
    b"\xa1\x00" * 300 + b"\x00",
    b"\x81" * 100_000 + b"\x00",                        # deeper than cbor2 decodes
    cbor2.dumps(2**200),                                # an integer JSON encoders refuse
    b"\xd9\x01\x02\x82\x01\x01",                        # a set (tag 258)
    b"\xf7",                                            # undefined
]
TYPES = ["theater:simple/runtime/log", "wasi:cli/stdout/write", "wasm", "lifecycle/start", "lifecycle/exit",
         "x/other"]
ACTOR = "a0dd0000-0000-4000-8000-000000000001"


@pytest.fixture
def odd_home(home):
    """A home whose one chain (signed with its host key, so valid) holds every odd datum as an
    event of every type: as a worker writes them, and a lifecycle/exit (which the chain takes from
    the server alone) as the server records one."""
    from chain.store import SERVER_RECORDED, ChainStore

    home.chains_db.parent.mkdir(parents=True, exist_ok=True)
    store = ChainStore(home.chains_db, keys.load_or_create(home))
    store.head(ACTOR, "odd")
    parent, seq = None, 0
    for data in ODD:
        for type_ in TYPES:
            parent = event_hash(ACTOR, seq, parent, type_, data)
            if type_ in SERVER_RECORDED:
                store.append(ACTOR, type_, data, 1)
            else:
                store.stage(ACTOR, {"seq": seq, "hash": parent.hex(), "type": type_, "time_ns": 1}, data)
            seq += 1
    store.commit()
    store.close()
    return home


def _ok(home, *args: str) -> bytes:
    r = run_cli(home, *args)
    assert r.code == 0 and "Traceback" not in r.err, (args, r.code, r.err[-2000:])
    return r.out


def test_the_cli_shows_odd_event_data_as_what_it_is(odd_home):
    undecodable = f"(undecodable data: {len(NOT_CBOR)} bytes)".encode()
    for args in (["logs", ACTOR], ["events", ACTOR], ["events", ACTOR, "--type", "x/other"]):
        assert undecodable in _ok(odd_home, *args), args
    logs = [orjson.loads(line) for line in _ok(odd_home, "logs", ACTOR, "--json").splitlines()]
    assert len(logs) == 2 * len(ODD)
    assert logs[0]["line"] == undecodable.decode() and logs[2]["line"] == "(1, 2, 3)" and logs[4]["line"] == "7"
    shown = orjson.loads(_ok(odd_home, "events", ACTOR, "--json"))
    assert len(shown) == len(ODD) * len(TYPES)
    assert shown[0]["body"] is None and shown[len(TYPES)]["body"] == [1, 2, 3]
    exported = _ok(odd_home, "export", ACTOR).splitlines()
    assert [orjson.loads(line)["body"] for line in exported] == [e["body"] for e in shown]
    assert b"odd" in _ok(odd_home, "inspect", ACTOR)
    assert orjson.loads(_ok(odd_home, "inspect", ACTOR, "--json"))["status"] == "exited"
    assert ACTOR.encode() in _ok(odd_home, "chains")
    assert b"ok " in _ok(odd_home, "verify", ACTOR)


def test_the_console_shows_odd_event_data_as_what_it_is():
    from supervisor.console import render

    for data in ODD:
        row = render.event_row(Event(ACTOR, 0, None, "wasm", data, event_hash(ACTOR, 0, None, "wasm", data)))
        orjson.dumps([row, render.live_event({}, data)])        # what the pages and the JSON API send
    assert render.event_row(Event(ACTOR, 0, None, "x", NOT_CBOR, b""))["parts"] == \
        [("data", f"({len(NOT_CBOR)} bytes, not CBOR)")]


def test_a_body_is_plain_data_however_deep_or_odd():
    from theater.bodies import body_of

    assert body_of(b"\x81" * 300 + b"\x00") == orjson.loads(orjson.dumps(body_of(b"\x81" * 300 + b"\x00")))
    assert repr(body_of(NOT_CBOR)) == f"(undecodable data: {len(NOT_CBOR)} bytes)"
    assert body_of(cbor2.dumps({1: b"x", "s": {2}})) == {"1": b"x", "s": "{2}"}

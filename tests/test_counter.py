"""The counter actor end to end, through the CLI, with real processes (issue: foundation)."""

from __future__ import annotations

import itertools

import orjson

from theater import keys
from theater.events import Event, decode_data, verify_chain

from .conftest import EXAMPLES, pid_alive, wait_for


def test_counter_requests_state_events_verify_stop(server):
    r = server.cli("start", str(EXAMPLES / "counter" / "manifest.toml"), "--json")
    assert r.code == 0, r.err
    actor = orjson.loads(r.out)["id"]
    replies = [server.cli("message", actor, "+1", "--request").out for _ in range(3)]
    assert replies == [b"1", b"2", b"3"]
    assert server.cli("state", actor).out == b"3"

    r = server.cli("events", actor, "--json")
    assert r.code == 0, r.err
    records = orjson.loads(r.out)
    events = [Event.from_json(e) for e in records]
    # linked: each event's parent is the previous event's hash, and each signature is valid
    report = verify_chain(events, keys.read_public(server.home))
    assert report.events == len(events)
    assert all(e.parent == p.hash for p, e in itertools.pairwise(events))
    assert events[0].type == "lifecycle/start"
    bodies = [decode_data(e.data) for e in events]
    calls = [b for e, b in zip(events, bodies, strict=True) if e.type == "wasm" and b["event"] == "call"]
    results = [b for e, b in zip(events, bodies, strict=True) if e.type == "wasm" and b["event"] == "result"]
    assert calls[0]["function"] == "theater:simple/actor.init"
    assert [c["params"][1] for c in calls[1:]] == [b"+1"] * 3                  # inputs recorded
    assert [r["result"] for r in results[1:]] == [[b"1"], [b"2"], [b"3"]]     # outputs recorded
    assert [r["state"] for r in results[1:]] == [b"1", b"2", b"3"]
    assert all(r.get("signature") for r in records[-1:])                     # the head is signed

    v = server.cli("verify", actor)
    assert v.code == 0 and "ok" in v.text, v.text + v.err

    pid = server.client().inspect(actor)["pid"]
    assert pid_alive(pid)
    assert server.cli("stop", actor).code == 0
    wait_for(lambda: not pid_alive(pid), what="the worker to exit")
    listed = orjson.loads(server.cli("list", "--json").out)
    assert listed == []


def test_each_actor_runs_in_its_own_process(server):
    c = server.client()
    ids = [c.start(EXAMPLES / "counter" / "manifest.toml")["id"] for _ in range(3)]
    pids = [c.inspect(a)["pid"] for a in ids]
    assert len(set(pids)) == 3
    assert server.pid not in pids
    for pid in pids:
        assert pid_alive(pid)
        cmdline = " ".join(__import__("psutil").Process(pid).cmdline())
        assert "--actor" in cmdline and "counter" in cmdline      # ps says which actor it is

"""supervisor.room and the registry's counts, in-process: which bound a new actor would pass, in
trees no test would start as processes (thousands deep)."""

from __future__ import annotations

import random

import pytest

from supervisor import room
from supervisor.registry import ActorRecord, ChildSpec, Registry, Status
from theater import manifest as manifests
from theater import protocol
from theater.config import ServerConfig
from theater.errors import Refused

MANIFEST = manifests.parse('name = "a"\nversion = "1"\ncomponent = "a.wat"\n')


def add(registry: Registry, parent: ActorRecord | None, status: Status = Status.RUNNING,
        **limits: int) -> ActorRecord:
    n = len(registry)
    spec = ChildSpec(f"a{n}", MANIFEST, "", ".", "sha", None, parent.actor_id if parent else None,
                     manifests.Limits(**limits))
    rec = ActorRecord(spec, status=status)
    registry.add(rec)
    return rec


def below(registry: Registry, rec: ActorRecord) -> list[ActorRecord]:
    """Registry.descendants as it was written first, recursively (the order to stop them in)."""
    out = []
    for child in reversed([registry.actors[c] for c in rec.children]):
        out.extend(below(registry, child))
        out.append(child)
    return out


def brute(registry: Registry, rec: ActorRecord) -> int:
    return sum(d.live for d in below(registry, rec))


def test_each_member_of_a_line_counts_the_live_actors_beneath_it():
    rng = random.Random(7)
    registry = Registry()
    recs = [add(registry, None)]
    for _ in range(300):
        recs.append(add(registry, rng.choice(recs), rng.choice([Status.RUNNING, Status.STOPPING, Status.EXITED])))
    for rec in rng.sample(recs, 30):
        line = registry.line(rec)
        assert line[0] is recs[0] and line[-1] is rec
        assert registry.live_beneath(line) == [brute(registry, r) for r in line]
        assert registry.descendants(rec) == below(registry, rec)


def test_a_tree_deeper_than_pythons_recursion_is_counted_and_listed():
    registry = Registry()
    rec = add(registry, None)
    for _ in range(5000):
        rec = add(registry, rec)
    line = registry.line(rec)
    assert len(line) == 5001 and registry.live_beneath(line) == list(range(5000, -1, -1))
    assert registry.descendants(line[0]) == line[:0:-1]         # and it can be stopped: the deepest first


def test_the_nearest_full_bound_is_the_one_named():
    registry = Registry()
    top = add(registry, None, descendants=3)
    mid = add(registry, top, descendants=3, children=1)
    kid = add(registry, mid)
    bounds = room.Room(registry, ServerConfig(max_actors=4))
    with pytest.raises(Refused, match=r"^this actor has 1 children, as many as its \[limits\] children \(1\)"):
        bounds.check(mid)
    other = add(registry, top)                          # top: 3 live beneath it
    with pytest.raises(Refused, match=rf"^its ancestor a \({top.actor_id}\) has 3 live descendants, as many as "
                                      r"its \[limits\] descendants \(3\) allows$"):
        bounds.check(kid)
    with pytest.raises(Refused, match=r"^this actor has 3 live descendants"):
        bounds.check(top)
    with pytest.raises(Refused, match=r"^the server has 4 live actors, as many as it allows \(4\); raise the bound "
                                      r"with theater-server --max-actors N, or \[root\] max_actors in server.toml$"):
        bounds.check(None)
    other.status = Status.EXITED                        # an ended actor holds no place
    bounds.check(top)
    bounds.check(None)


def test_a_tree_is_at_most_max_depth_generations_and_shows_whole():
    registry = Registry()
    rec = add(registry, None)
    bounds = room.Room(registry, ServerConfig())
    for _ in range(room.MAX_DEPTH - 1):
        bounds.check(rec)
        rec = add(registry, rec)
    with pytest.raises(Refused, match=rf"^this actor is {room.MAX_DEPTH} generations deep in its tree, the most a "
                                      rf"tree may have \({room.MAX_DEPTH}\): a child of it would be one more$"):
        bounds.check(rec)
    header, *_ = protocol.encode({"k": "ok", "re": "x", "tree": registry.tree()})   # what `theater tree` gets
    assert header.count(b'"children":[]') == 1


def test_refusals_are_counted_by_bound_and_logged_at_most_once_a_minute_each(caplog):
    """An actor spawning in a loop past its bound is refused at every try: each is counted (the
    metrics), and the log says so once, then again a minute on with how many it left unsaid."""
    registry = Registry()
    top = add(registry, None, children=1)
    add(registry, top)
    now = [100.0]
    bounds = room.Room(registry, ServerConfig(max_actors=2), clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="theater.server"):
        for _ in range(5):
            with pytest.raises(Refused):
                bounds.check(top)
            now[0] += 1
        with pytest.raises(Refused):
            bounds.check(None)
        now[0] += room.LOG_EVERY
        with pytest.raises(Refused):
            bounds.check(top)
    assert bounds.refused == {"children": 6, "max_actors": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"theater-server: refused a new actor under a ({top.actor_id}): this actor has 1 children, as many as "
        "its [limits] children (1) allows",
        "theater-server: refused a new actor at the top level: the server has 2 live actors, as many as it allows "
        "(2); raise the bound with theater-server --max-actors N, or [root] max_actors in server.toml",
        f"theater-server: refused a new actor under a ({top.actor_id}): this actor has 1 children, as many as "
        "its [limits] children (1) allows (4 more in the last 65s)"]

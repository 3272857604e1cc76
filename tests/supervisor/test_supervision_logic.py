"""supervisor.supervision, in-process: the real decisions carried out against fakes.

A fake clock, a fake outbox (messages to workers and chain records are noted, records are
acknowledged at once, timers run when the clock is advanced), and a fake fork server whose
"workers" come up, fail or stop as each test says: the restart matrix, each top-level
actor's own budget, escalation, backoff, shutdown and every [restart] option, without
processes and in milliseconds.
"""

from __future__ import annotations

import errno
import random
import signal
from types import SimpleNamespace
from typing import Any

import pytest

from supervisor.compiles import Compiles, Outcome
from supervisor.directory import Directory
from supervisor.hangs import HANG_GRACE, STARTUP_TIMEOUT
from supervisor.limits import RlimitController
from supervisor.outbox import Outbox
from supervisor.persist import SavedActors
from supervisor.registry import ActorRecord, Registry, Status
from supervisor.restart import DEFAULT_BACKOFF
from supervisor.supervision import Supervision
from theater import manifest as manifests
from theater.config import Compile, ServerConfig
from theater.errors import Refused, TheaterError
from theater.paths import Home

EXIT_FAILED = 70 << 8          # a wait status: exited with 70


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeOutbox(Outbox):
    def __init__(self, registry: Registry, clock: Clock) -> None:
        super().__init__(registry, clock)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.records: list[tuple[str, str, bytes]] = []
        self.held: list | None = None       # a list: records wait there for ``release`` (a slow chain)

    def to_worker(self, actor_id: str, header: dict[str, Any], *frames: bytes) -> bool:
        self.sent.append((actor_id, header))
        return True

    def ask_chain(self, header: dict[str, Any], *frames: bytes, client=None, client_id="", then=None) -> None:
        self.records.append((header.get("actor", ""), header.get("type", ""), frames[0] if frames else b""))
        if then is not None and self.held is not None:
            self.held.append(then)
        elif then is not None:
            then({"k": "ok", "re": "x"}, [])

    def release(self) -> None:
        held, self.held = self.held or [], None
        for then in held:
            then({"k": "ok", "re": "x"}, [])


class FakeForkServer:
    """Workers that do what the test says: come up (default) or fail at init; they end at SIGTERM
    (unless "stubborn") and at SIGKILL."""

    def __init__(self) -> None:
        self.next_pid = 100
        self.spawned: list[tuple[str, int]] = []        # (actor id, pid) in order
        self.signals: list[tuple[int, int]] = []
        self.behaviour: dict[str, str] = {}             # actor name -> "up" | "fail" | "stubborn"
        self.queue: list[tuple[str, int]] = []
        self.delivered: list[tuple[int, int]] = []      # signals not yet acted on

    def spawn(self, actor_id: str, name: str, component: str, fuel: bool, confine: dict[str, Any]) -> None:
        self.next_pid += 1
        self.spawned.append((actor_id, self.next_pid))
        self.queue.append((actor_id, self.next_pid))

    def signal(self, pid: int, sig: int) -> bool:
        self.signals.append((pid, sig))
        self.delivered.append((pid, sig))
        return True


class FakeCompiles(Compiles):
    """Every component is compiled already, unless a test holds its compiles (then ``finish``)."""

    def __init__(self, tmp_path, clock: Clock, outbox: FakeOutbox) -> None:
        super().__init__(Home(tmp_path / "home"), Compile(), "server.toml", RlimitController(reason="test"),
                         outbox.later, clock)
        self.hold = False
        self.waiting: list = []

    def ensure(self, sha: str, fuel: bool, then) -> None:
        if self.hold:
            self.waiting.append(then)
        else:
            then(Outcome())

    def finish(self, outcome: Outcome) -> None:
        waiting, self.waiting = self.waiting, []
        for then in waiting:
            then(outcome)


class BusyLimits(RlimitController):
    """A host whose cgroups refuse an actor's limits (v1: a memory limit below what is charged)."""

    def create(self, name: str, memory: int, cpu: float, pids: int):
        raise OSError(errno.EBUSY, "Device or resource busy")


class World:
    def __init__(self, tmp_path, root: dict[str, Any] | None = None, seed: int = 1,
                 limits: RlimitController | None = None) -> None:
        self.clock = Clock()
        self.registry = Registry()
        self.outbox = FakeOutbox(self.registry, self.clock)
        self.forks = FakeForkServer()
        config = ServerConfig(**(root or {}))
        self.compiles = FakeCompiles(tmp_path, self.clock, self.outbox)
        self.sup = Supervision(self.registry, self.outbox, self.forks, limits or RlimitController(reason="test"),
                               SavedActors(tmp_path / "actors"), Directory(self.registry, self.outbox), config,
                               self.compiles, clock=self.clock, wall=self.clock, rng=random.Random(seed))

    # the workers' side ------------------------------------------------------------------

    def settle(self) -> None:
        """Brings every spawned worker as far as its behaviour says (hello, ready, or a failure),
        and lets signalled workers end."""
        while self.forks.queue or self.forks.delivered:
            if self.forks.delivered:
                self._signalled(*self.forks.delivered.pop(0))
                continue
            actor_id, pid = self.forks.queue.pop(0)
            rec = self.registry.get(actor_id)
            if rec is None:
                continue
            self.sup.on_fork_report({"op": "spawned", "actor": actor_id, "pid": pid})
            sent = len(self.outbox.sent)
            self.sup.on_worker(rec, {"k": "hello", "id": "h", "pid": pid, "endpoint": f"ipc://{pid}"}, [])
            if not [h for a, h in self.outbox.sent[sent:] if a == actor_id and h.get("re") == "h"]:
                continue                # its hello unanswered, its actor never runs
            how = self.forks.behaviour.get(rec.name, "up")
            if how == "up":
                self.sup.on_worker(rec, {"k": "ready"}, [])
            elif how == "fail":
                self.crash(rec, "trap", "init trapped")

    def _signalled(self, pid: int, sig: int) -> None:
        rec = self.registry.by_pid.get(pid)
        if rec is None:
            return
        if sig == signal.SIGKILL:
            self.sup.on_fork_report({"op": "exited", "pid": pid, "status": signal.SIGKILL})
        elif self.forks.behaviour.get(rec.name) != "stubborn":
            self.sup.on_worker(rec, {"k": "exiting", "reason": "stopped"}, [])
            self.sup.on_fork_report({"op": "exited", "pid": pid, "status": 0})

    def crash(self, rec: ActorRecord, reason: str = "trap", error: str = "boom") -> None:
        pid = rec.pid
        assert pid is not None
        self.sup.on_worker(rec, {"k": "failed", "reason": reason, "error": error}, [])
        self.sup.on_fork_report({"op": "exited", "pid": pid, "status": EXIT_FAILED})

    def exit_normally(self, rec: ActorRecord) -> None:
        pid = rec.pid
        assert pid is not None
        self.sup.on_worker(rec, {"k": "exiting", "reason": "shutdown"}, [])
        self.sup.on_fork_report({"op": "exited", "pid": pid, "status": 0})

    def killed(self, rec: ActorRecord, sig: int = signal.SIGKILL) -> None:
        pid = rec.pid
        assert pid is not None
        self.sup.on_fork_report({"op": "exited", "pid": pid, "status": sig})

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.outbox.run_timers(lambda fn: fn())
        self.settle()

    # starting actors --------------------------------------------------------------------

    def start(self, name: str, restart: str = "", parent: ActorRecord | None = None,
              handlers: str = "") -> ActorRecord:
        text = f'name = "{name}"\nversion = "1"\ncomponent = "x.wat"\n{handlers}\n[restart]\n{restart}\n'
        m = manifests.parse(text, f"{name}.toml")
        rec = self.sup.start(m, text, "/tmp", "0" * 64, None, parent=parent.actor_id if parent else None)
        self.settle()
        return rec

    def parent_with(self, strategy: str, n: int, child_restart: str = "", parent_restart: str = "",
                    ) -> tuple[ActorRecord, list[ActorRecord]]:
        parent = self.start("parent", f'strategy = "{strategy}"\n{parent_restart}',
                            handlers='[[handler]]\ntype = "supervisor"')
        kids = [self.start(f"c{i}", child_restart, parent=parent) for i in range(n)]
        return parent, kids

    def incarnations(self, rec: ActorRecord) -> int:
        return sum(1 for a, _ in self.forks.spawned if a == rec.actor_id)


# ---- the restart matrix: type x how it ended -------------------------------------------------------

@pytest.mark.parametrize(("rtype", "ending", "restarted"), [
    ("permanent", "crash", True), ("permanent", "normal", True),
    ("transient", "crash", True), ("transient", "normal", False),
    ("temporary", "crash", False), ("temporary", "normal", False),
])
def test_restart_type_decides_after_each_kind_of_exit(tmp_path, rtype, ending, restarted):
    w = World(tmp_path)
    rec = w.start("a", f'type = "{rtype}"')
    (w.crash if ending == "crash" else w.exit_normally)(rec)
    w.advance(0)
    assert w.incarnations(rec) == (2 if restarted else 1)
    if restarted:
        assert rec.status == Status.RUNNING and rec.restarts == 1
    else:
        assert rec.status == (Status.FAILED if ending == "crash" else Status.EXITED)
    exit_record = [r for r in w.outbox.records if r[1] == "lifecycle/exit"]
    assert len(exit_record) == 1


@pytest.mark.parametrize(("strategy", "expected"), [
    ("one_for_one", {"c1"}),
    ("one_for_all", {"c0", "c1", "c2"}),
    ("rest_for_one", {"c1", "c2"}),
])
def test_strategies_restart_the_right_siblings_in_start_order(tmp_path, strategy, expected):
    w = World(tmp_path)
    _, kids = w.parent_with(strategy, 3)
    before = list(w.forks.spawned)
    w.crash(kids[1])
    w.advance(0)
    names = {w.registry.actors[a].name for a, _ in w.forks.spawned[len(before):]}
    assert names == expected
    order = [w.registry.actors[a].name for a, _ in w.forks.spawned[len(before):]]
    assert order == sorted(order)
    assert all(k.status == Status.RUNNING for k in kids)


# ---- intensity: each top-level actor has its own budget; children share their parent's ----------

def test_a_flapping_top_level_actor_does_not_use_up_a_healthy_ones_budget(tmp_path):
    w = World(tmp_path, root={"intensity": 3, "period": 5.0})
    flappy, healthy = w.start("flappy"), w.start("healthy")
    for _ in range(3):
        w.crash(flappy)
        w.advance(0.5)
    w.crash(healthy)
    w.advance(0.5)
    assert healthy.status == Status.RUNNING and healthy.restarts == 1
    w.crash(flappy)                     # its fourth within the period: over its own budget
    w.advance(0.5)
    assert flappy.status == Status.FAILED and "restart intensity exceeded" in (flappy.last_error or "")
    assert healthy.status == Status.RUNNING


def test_restarts_outside_the_period_do_not_count(tmp_path):
    w = World(tmp_path, root={"intensity": 1, "period": 5.0})
    rec = w.start("a")
    for _ in range(5):
        w.crash(rec)
        w.advance(6.0)
        assert rec.status == Status.RUNNING
    assert rec.restarts == 5


def test_children_over_their_parents_intensity_escalate(tmp_path):
    w = World(tmp_path)
    parent, kids = w.parent_with("one_for_one", 2, parent_restart="intensity = 1\nperiod = \"10s\"")
    w.crash(kids[0])
    w.advance(0.1)
    assert kids[0].status == Status.RUNNING
    parent_pid = parent.pid
    w.crash(kids[1])                   # the second restart of its children within 10 s: too many
    w.advance(0.1)
    assert (parent_pid, signal.SIGKILL) in w.forks.signals
    assert parent.last_exit is not None and parent.last_exit.reason == "escalation"
    assert parent.restarts == 1 and parent.status == Status.RUNNING    # restarted by the root


def test_an_ordered_restart_goes_no_further_when_its_supervisor_escalates(tmp_path):
    """one_for_all starts its children in order; one whose restart fails over the parent's
    intensity escalates, and the children after it must not be started (they would run their
    init only to be killed with their parent)."""
    w = World(tmp_path)
    parent, kids = w.parent_with("one_for_all", 3, parent_restart='intensity = 1\nperiod = "10s"')
    w.forks.behaviour["c0"] = "fail"        # its next init traps: the second restart within 10 s
    parent_pid = parent.pid
    w.crash(kids[2])
    w.advance(0.1)
    assert (parent_pid, signal.SIGKILL) in w.forks.signals
    assert [w.incarnations(k) for k in kids] == [2, 1, 1]


# ---- backoff ---------------------------------------------------------------------------------

def _next_launch(w: World, rec: ActorRecord, before: int) -> None:
    """Advances the clock timer by timer until ``rec`` has been launched again."""
    while w.incarnations(rec) == before:
        due = w.outbox.next_timer()
        assert due is not None, "no restart is coming"
        w.advance(due - w.clock.now)
    w.settle()


def _delays(w: World, rec: ActorRecord, n: int) -> list[float]:
    """Crashes ``rec`` n times, each time right after it comes back; the delay before each restart."""
    out = []
    for _ in range(n):
        before, start = w.incarnations(rec), w.clock.now
        w.crash(rec)
        _next_launch(w, rec, before)
        out.append(round(w.clock.now - start, 3))
    return out


MANY = {"intensity": 100}           # root flags that allow every restart these tests make


def test_backoff_from_the_manifest_doubles_and_caps(tmp_path):
    w = World(tmp_path, root=MANY)
    rec = w.start("a", 'backoff = { min = "100ms", max = "1s", jitter = 0 }')
    assert _delays(w, rec, 6) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoff_keeps_growing_while_incarnations_never_become_ready(tmp_path):
    """The curve starts over only after an incarnation *ran* longer than max, never because the
    last ready one is long ago (which once reset it to min for ever)."""
    w = World(tmp_path, root=MANY)
    rec = w.start("a", 'backoff = { min = "100ms", max = "400ms", jitter = 0 }')
    w.forks.behaviour["a"] = "fail"          # from now on init traps: never ready again
    w.clock.now += 10                        # long after its last ready incarnation
    gaps, last = [], w.clock.now
    w.crash(rec)
    while len(gaps) < 7:
        _next_launch(w, rec, w.incarnations(rec))
        gaps.append(round(w.clock.now - last, 3))
        last = w.clock.now
    assert gaps == [0.1, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4]


def test_backoff_starts_over_after_an_incarnation_ran_longer_than_max(tmp_path):
    w = World(tmp_path, root=MANY)
    rec = w.start("a", 'backoff = { min = "100ms", max = "400ms", jitter = 0 }')
    assert _delays(w, rec, 3) == [0.1, 0.2, 0.4]
    w.advance(1.0)                     # it runs well for longer than max
    assert _delays(w, rec, 2) == [0.1, 0.2]


def test_without_a_backoff_the_first_restart_is_immediate_then_the_default_curve(tmp_path):
    w = World(tmp_path, root=MANY)
    rec = w.start("a")
    delays = _delays(w, rec, 4)
    assert delays[0] == 0.0
    lo = DEFAULT_BACKOFF.min
    for got, base in zip(delays[1:], (lo, 2 * lo, 4 * lo), strict=True):
        assert base <= got <= base * (1 + DEFAULT_BACKOFF.jitter)


# ---- the other [restart] options take effect ------------------------------------------------------

@pytest.mark.parametrize(("state", "mode"), [("last", "resume"), ("initial", "init")])
def test_state_option_decides_how_a_restart_starts(tmp_path, state, mode):
    w = World(tmp_path)
    rec = w.start("a", f'state = "{state}"')
    assert rec.run.mode == "init"
    w.crash(rec)
    w.advance(0)
    assert rec.run.number == 2 and rec.run.mode == mode
    assert rec.hello_answer()[0]["mode"] == mode


def test_shutdown_timeout_sends_sigterm_then_sigkill_when_it_passes(tmp_path):
    w = World(tmp_path)
    rec = w.start("a", 'shutdown = "2s"')
    w.forks.behaviour["a"] = "stubborn"
    pid = rec.pid
    w.sup.stop(rec, "test", lambda: None)
    assert w.forks.signals == [(pid, signal.SIGTERM)]
    w.advance(1.9)
    assert w.forks.signals == [(pid, signal.SIGTERM)]
    w.advance(0.2)
    assert w.forks.signals == [(pid, signal.SIGTERM), (pid, signal.SIGKILL)]


def test_brutal_kill_sends_sigkill_at_once(tmp_path):
    w = World(tmp_path)
    rec = w.start("a", 'shutdown = "brutal_kill"')
    pid = rec.pid
    stopped = []
    w.sup.stop(rec, "test", lambda: stopped.append(1))
    assert w.forks.signals == [(pid, signal.SIGKILL)]
    w.settle()
    assert stopped and rec.status == Status.EXITED


def test_a_silent_worker_is_killed_as_hung_after_its_call_timeout_and_the_grace(tmp_path):
    w = World(tmp_path)
    text = 'name = "a"\nversion = "1"\ncomponent = "x.wat"\n[limits]\ncall_timeout = "3s"\n'
    rec = w.sup.start(manifests.parse(text, "a.toml"), text, "/tmp", "0" * 64, None)
    w.settle()
    w.clock.now += 3 + HANG_GRACE - 0.5
    w.sup.check_hangs()
    assert not w.forks.signals
    w.clock.now += 1
    w.sup.check_hangs()
    assert w.forks.signals == [(rec.pid, signal.SIGKILL)] and rec.run.kill_reason == "hang"


# ---- compiling before the fork --------------------------------------------------------------------

def start_compiling(w: World, name: str = "big") -> tuple[ActorRecord, list[TheaterError | None]]:
    """An actor whose component is still compiling; the list gets what its start waiter hears."""
    w.compiles.hold = True
    heard: list[TheaterError | None] = []
    text = f'name = "{name}"\nversion = "1"\ncomponent = "big.wasm"\n'
    rec = w.sup.start(manifests.parse(text, f"{name}.toml"), text, "/tmp", "0" * 64, None, on_ready=heard.append)
    w.settle()
    assert not w.forks.spawned and rec.status == Status.STARTING
    return rec, heard


def test_the_start_timeout_counts_from_the_fork_not_from_the_compile(tmp_path):
    w = World(tmp_path)
    rec, heard = start_compiling(w)
    w.clock.now += STARTUP_TIMEOUT + 30           # a long compile
    w.sup.check_hangs()
    w.compiles.finish(Outcome(compiled={"seconds": 90.0}))
    assert [a for a, _ in w.forks.spawned] == [rec.actor_id]
    w.sup.on_fork_report({"op": "spawned", "actor": rec.actor_id, "pid": w.forks.spawned[0][1]})
    w.clock.now += 1
    w.sup.check_hangs()                           # the worker has had one second, not ninety
    assert not w.forks.signals and rec.run.kill_reason is None
    w.settle()
    assert rec.status == Status.RUNNING and heard == [None]
    assert rec.run.compiled == {"seconds": 90.0}          # told to the worker, which records it
    assert rec.hello_answer()[0]["compiled"] == {"seconds": 90.0}


def test_an_actor_stopped_while_its_component_compiles_is_never_forked(tmp_path):
    w = World(tmp_path)
    rec, heard = start_compiling(w)
    stopped: list[int] = []
    w.sup.stop(rec, "test", lambda: stopped.append(1))
    assert stopped
    w.compiles.finish(Outcome(compiled={"seconds": 3.0}))
    assert not w.forks.spawned
    assert len(heard) == 1 and "stopped before it was ready" in str(heard[0])


def test_a_component_that_cannot_be_compiled_fails_the_start_with_the_compile_error(tmp_path):
    w = World(tmp_path)
    rec, heard = start_compiling(w)
    w.compiles.finish(Outcome(reason="compile", error="too big to compile (18.4 MB) within the compile memory "
                                                       "ceiling (64MiB); raise `memory` under [compile] in x"))
    assert not w.forks.spawned
    assert rec.status == Status.FAILED
    (err,) = heard
    assert isinstance(err, Refused) and "big.toml: component 'big.wasm': too big to compile" in err.message
    exits = [r for r in w.outbox.records if r[1] == "lifecycle/exit"]
    assert len(exits) == 1 and b"start:compile" in exits[0][2]


def test_limits_that_cannot_be_set_fail_the_start_and_no_actor_code_runs(tmp_path):
    """Red-team finding: a cgroup that refused the limits (v1, process_memory below what the
    worker is charged) left the actor running with none, while inspect said they held."""
    w = World(tmp_path, limits=BusyLimits(reason="test"))
    heard: list[TheaterError | None] = []
    text = 'name = "tight"\nversion = "1"\ncomponent = "x.wat"\n[restart]\ntype = "temporary"\n'
    rec = w.sup.start(manifests.parse(text, "tight.toml"), text, "/tmp", "0" * 64, None, on_ready=heard.append)
    w.settle()
    (pid,) = [p for _, p in w.forks.spawned]
    assert (pid, signal.SIGKILL) in w.forks.signals
    assert not [h for _, h in w.outbox.sent if h.get("re") == "h"]        # its hello was never answered
    assert rec.status == Status.FAILED and rec.last_exit is not None and rec.last_exit.reason == "start:limits"
    (err,) = heard
    assert "failed to start: cannot set its limits (rlimit: Device or resource busy)" in str(err), err


def test_a_peer_asking_for_an_actor_between_its_exit_and_its_restart_waits_for_the_restart(tmp_path):
    """Once an actor's worker has exited, what comes next waits for the exit's record in the
    chain; an actor asking where it listens meanwhile was refused with 'actor ... is running'
    (found by killing receivers under load). It waits, and is answered by the restart."""
    w = World(tmp_path)
    asker, target = w.start("asker"), w.start("target")
    w.outbox.held = []                  # the chain is slow: the exit's record is not stored yet
    w.killed(target)
    assert target.status == Status.RUNNING and target.run.endpoint is None
    w.sup.directory.resolve(asker, {"k": "resolve", "id": "r1", "actor": target.actor_id})
    assert not [h for a, h in w.outbox.sent if a == asker.actor_id and h.get("re") == "r1"]
    w.outbox.release()
    w.advance(1.0)
    (answer,) = [h for a, h in w.outbox.sent if a == asker.actor_id and h.get("re") == "r1"]
    assert answer["k"] == "ok" and answer["endpoint"] == target.run.endpoint and target.pid is not None


def test_a_heartbeat_keeps_only_what_a_worker_counts(tmp_path):
    """Red-team finding: every integer field of a heartbeat was kept, so a worker (compromised)
    grew the server by ~34 MB a message until its incarnation ended."""
    w = World(tmp_path)
    rec = w.start("a")
    w.sup.on_worker(rec, {"k": "heartbeat", "events": 7, "calls": 2, "mailbox": 0, "dropped": 1,
                          **{f"x{i}": i for i in range(1000)}}, [])
    assert {k: rec.run.stats[k] for k in ("events", "calls", "mailbox", "dropped")} == \
        {"events": 7, "calls": 2, "mailbox": 0, "dropped": 1}
    assert not any(k.startswith("x") for k in rec.run.stats), rec.run.stats


def test_a_second_ready_announces_nothing(tmp_path):
    """Red-team finding: a worker's repeated ready ran the actor's 'up' again each time (every
    watching client told, the metrics counted)."""
    w = World(tmp_path)
    rec = w.start("a")
    ups: list[str] = []
    w.sup.directory.listeners.append(lambda what, r: ups.append(what))
    ready_at = rec.run.ready
    for _ in range(3):
        w.sup.on_worker(rec, {"k": "ready"}, [])
    assert ups == [] and rec.run.ready == ready_at


def test_only_the_one_asked_answers(tmp_path):
    """Red-team finding: a worker's ok/error answered whatever request id it named: the server's
    queries and lifecycle records to the chain (its ids a counter) and requests to other actors."""
    from supervisor.outbox import Outbox

    box = Outbox(Registry(), Clock())
    heard: list[str] = []
    box.chain = SimpleNamespace(send_multipart=lambda _frames: None)
    box.ask_chain({"k": "query", "what": "events", "actor": "b"}, then=lambda h, _d: heard.append(("chain", h["k"])))
    (chain_rid,) = box.pending
    box.to_worker = lambda *_a, **_k: True
    box.ask_worker("b", {"k": "get_state"}, then=lambda h, _d: heard.append(("b", h["k"])))
    (worker_rid,) = set(box.pending) - {chain_rid}
    forged = {"k": "error", "code": "refused", "error": "forged"}
    box.answered(chain_rid, {**forged, "re": chain_rid}, [], by="a")        # a worker, for the chain
    box.answered(worker_rid, {**forged, "re": worker_rid}, [], by="a")      # a for b
    assert heard == [] and len(box.pending) == 2
    box.answered(chain_rid, {"k": "ok", "re": chain_rid}, [])
    box.answered(worker_rid, {"k": "ok", "re": worker_rid}, [], by="b")
    assert heard == [("chain", "ok"), ("b", "ok")]


def test_resolves_parked_for_a_starting_actor_are_one_per_asker(tmp_path):
    """Red-team finding: every resolve of an actor still starting was parked, and all of them
    answered when it was up: a flood of 1.1 million held the server for ~45 s."""
    from supervisor.directory import Directory

    told: list[tuple[str, dict[str, Any]]] = []
    target = SimpleNamespace(actor_id="t", status=Status.STARTING, run=SimpleNamespace(
        endpoint=None, inbox_key=b"k" * 32, number=1))
    directory = Directory(SimpleNamespace(lookup=lambda _id, see: target),
                          SimpleNamespace(to_worker=lambda actor, header: told.append((actor, header))))
    for i in range(1000):
        directory.resolve(SimpleNamespace(actor_id="flooder"), {"id": f"r{i}", "actor": "t"})
    directory.resolve(SimpleNamespace(actor_id="other"), {"id": "o", "actor": "t"})
    assert {a: dict(w) for a, w in directory.waiting.items()} == {"t": {"flooder": "r999", "other": "o"}}
    assert len(told) == 999 and all(h["k"] == "error" for _, h in told)     # each earlier one told so
    told.clear()
    target.status, target.run.endpoint = Status.RUNNING, "ipc://t"
    directory.up(target)
    assert sorted((a, h["re"]) for a, h in told) == [("flooder", "r999"), ("other", "o")]


def test_an_actor_over_its_rate_of_asks_is_refused_and_others_are_not(tmp_path, monkeypatch):
    """Red-team finding: a loop resolving a name nobody has (or a compromised worker) asked the
    server thousands of times a second, and took its one thread from every other actor."""
    from supervisor import inbox as inbox_mod

    w = World(tmp_path)
    a, b = w.start("a"), w.start("b")
    resolved: list[str] = []
    box = inbox_mod.Inbox(SimpleNamespace(outbox=w.outbox, registry=w.registry, supervision=w.sup),
                          SimpleNamespace(resolve=lambda rec, _h: resolved.append(rec.name)), gate=None)
    now = [100.0]
    monkeypatch.setattr(inbox_mod.time, "monotonic", lambda: now[0])
    for i in range(3000):
        box.worker_message(a, {"k": "resolve", "id": f"r{i}", "actor": "x"}, [])
    assert resolved.count("a") == inbox_mod.ASKS_AT_ONCE
    refusals = [h for actor, h in w.outbox.sent if actor == a.actor_id and h.get("k") == "error"]
    assert len(refusals) == 3000 - inbox_mod.ASKS_AT_ONCE and "over its rate" in refusals[0]["error"]
    assert a.run.stats["asks_refused"] == len(refusals)
    box.worker_message(b, {"k": "resolve", "id": "b1", "actor": "x"}, [])       # another actor's budget
    now[0] += 0.5                                                                # half a second refills
    for i in range(600):
        box.worker_message(a, {"k": "resolve", "id": f"s{i}", "actor": "x"}, [])
    assert resolved.count("b") == 1 and resolved.count("a") == inbox_mod.ASKS_AT_ONCE + 500


def test_a_parents_child_queries_are_parked_one_at_a_time(tmp_path):
    """A parent's worker that sent child_state after child_state without waiting (compromised; a
    child that never answers) had each parked for PENDING_TIMEOUT: up to 300,000 within its budget
    of asks. The latest is parked; each earlier one is answered at once, as given up."""
    from supervisor import children
    from supervisor.services import Services

    w = World(tmp_path)
    parent, (kid,) = w.parent_with("one_for_one", 1)
    services = SimpleNamespace(outbox=w.outbox, registry=w.registry)
    services.ask_state = Services.ask_state.__get__(services)
    for i in range(1000):
        children.handle(services, parent, {"k": "child_state", "id": f"q{i}", "child": kid.actor_id}, [])
    asked = [h for actor, h in w.outbox.sent if actor == kid.actor_id and h["k"] == "get_state"]
    assert len(asked) == 1000 and len(w.outbox.pending) == 1                   # one parked, the latest
    told = {h["re"]: h for actor, h in w.outbox.sent if actor == parent.actor_id and h.get("re", "")[:1] == "q"}
    assert sorted(told) == sorted(f"q{i}" for i in range(999))
    assert all(h["k"] == "error" and "took its place" in h["error"] for h in told.values())
    w.outbox.answered(asked[-1]["id"], {"k": "ok", "re": asked[-1]["id"], "has_state": True}, [b"s"],
                      by=kid.actor_id)
    last = [h for actor, h in w.outbox.sent if actor == parent.actor_id][-1]
    assert last["k"] == "ok" and last["re"] == "q999" and not w.outbox.pending


def test_a_child_whose_directory_leads_out_of_its_parents_now_is_not_forked(tmp_path):
    """The spawn checked the child's grants; its directory is resolved again when its worker is
    launched (the view the worker gets): swapped for a link out in between, no worker is forked."""
    w = World(tmp_path)
    (tmp_path / "data" / "x").mkdir(parents=True)
    (tmp_path / "outside").mkdir()

    def start(name: str, path: str, parent: ActorRecord | None) -> ActorRecord:
        text = (f'name = "{name}"\nversion = "1"\ncomponent = "x.wat"\n[[handler]]\ntype = "filesystem"\n'
                f'path = "{path}"\n[[handler]]\ntype = "supervisor"\n[restart]\ntype = "temporary"\n')
        rec = w.sup.start(manifests.parse(text, f"{name}.toml"), text, str(tmp_path), "0" * 64, None,
                          parent=parent.actor_id if parent else None)
        w.settle()
        return rec
    parent = start("parent", "data", None)
    inside = start("inside", "data/x", parent)
    assert inside.status == Status.RUNNING
    (tmp_path / "data" / "x").rmdir()
    (tmp_path / "data" / "x").symlink_to(tmp_path / "outside")       # after the spawn's check
    kid = start("kid", "data/x", parent)
    assert w.incarnations(kid) == 0 and kid.status != Status.RUNNING
    assert kid.last_error is not None and "outside its parent's directories" in kid.last_error, kid.last_error

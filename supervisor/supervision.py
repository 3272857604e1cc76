"""Actor lifecycles and the supervision tree: start, stop, exit, restart (Erlang/OTP semantics).

The decisions are the pure functions of ``restart``; this module carries them out. Every
incarnation ends in ``_exited`` (the fork server reports the process's exit status): the
exit is classified (``exits``), recorded in the actor's chain as ``lifecycle/exit``, and then
either finishes a stop someone asked for, or goes to the supervisor's policy: the parent
actor's callbacks, then restart by type, strategy and intensity, escalating to the
grandparent when intensity is exceeded. Each top-level actor has its own restart budget
under the server's ``[root]`` flags (as systemd units do); the children of one actor share
theirs, as in OTP. A top-level actor over its budget is marked failed and left stopped.

Time comes from the injected ``clock`` (monotonic) and ``wall`` (for people): tests drive both.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from theater import attenuation, protocol, sandbox, tickets
from theater.config import ServerConfig
from theater.errors import ActorFailed, NotFound, Refused, TheaterError
from theater.ids import new_actor_id
from theater.manifest import Manifest

from . import exits, hangs, restart
from .compiles import Compiles, Outcome
from .directory import Directory
from .launch import ForkServer
from .limits import Controller, LimitsRefused
from .outbox import Outbox
from .persist import SavedActors
from .registry import ActorRecord, ChildSpec, Exit, ExitKind, Incarnation, Registry, Status
from .restart import Action
from .stopping import Stopper, call_off

log = logging.getLogger("theater.server")

# Descriptors a worker may open: its sockets (one per peer it talks to), its component's mapping, the store.
WORKER_NOFILE = 1024
HEARTBEAT_STATS = ("events", "calls", "mailbox", "dropped")     # what a worker's heartbeat reports

Done = Callable[[], None]
Ready = Callable[[TheaterError | None], None]


class Supervision:
    def __init__(self, registry: Registry, outbox: Outbox, launcher: ForkServer, limits: Controller,
                 saved: SavedActors, directory: Directory, config: ServerConfig, compiles: Compiles,
                 user: tuple[int, int] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        self.registry, self.outbox, self.launcher, self.limits = registry, outbox, launcher, limits
        self.saved, self.directory, self.config, self.compiles = saved, directory, config, compiles
        self.user = list(user) if user else None
        self.clock, self.wall = clock, wall
        self.rng = rng or random.Random()
        self.stopping = False
        self.start_waiters: dict[str, list[Ready]] = {}
        self.stops = Stopper(registry, self._signal, outbox.later)

    # ---- starting ------------------------------------------------------------------------

    def start(self, manifest: Manifest, text: str, base: str, component: str, init_state: bytes | None,
              parent: str | None = None, on_ready: Ready | None = None, actor_id: str | None = None,
              ended: dict[str, Any] | None = None) -> ActorRecord:
        """Starts a new actor (or, given ``actor_id``, brings back a saved one, resuming its state;
        one saved as ``ended`` is listed so, not started)."""
        spec = ChildSpec(actor_id or new_actor_id(), manifest, text, base, component, init_state, parent,
                         manifest.effective_limits(self.config.limits))
        rec = ActorRecord(spec, started_at=self.wall())
        self.registry.add(rec)
        if on_ready is not None:
            self.start_waiters.setdefault(rec.actor_id, []).append(on_ready)
        if actor_id is not None:            # restored after a server restart: not counted as a restart
            rec.next_mode = rec.restart_mode
        if ended is not None and self.saved.restore_end(rec, ended):
            return rec
        self._launch(rec, "server restart" if actor_id else None)
        if parent is None:          # while its worker starts (saving takes ~0.3 ms)
            self.saved.save(rec)
        return rec

    def _launch(self, rec: ActorRecord, reason: str | None = None) -> None:
        now = self.clock()
        self.registry.launch(rec, Incarnation(rec.run.number + 1, reason, rec.next_mode, launched=now, last_seen=now))
        rec.status = Status.STARTING if rec.run.number == 1 else Status.RESTARTING
        rec.child_restarts = []          # a restarted supervisor counts its children's restarts afresh
        spec = rec.spec
        if spec.parent is None:
            self.saved.launched(rec)
        view = sandbox.view(spec.manifest, spec.base)
        if why := self._beyond_parent(rec, view):
            return self._not_spawned(rec, Outcome(reason="manifest", error=f"{spec.manifest.source}: {why}"))
        confine = {"user": self.user, "nofile": WORKER_NOFILE, "view": view,
                   "data_limit": spec.limits.process_memory if self.limits.kind == "rlimit" else 0}
        self.compiles.then_spawn(rec, self.launcher, confine, self._not_spawned)

    def _beyond_parent(self, rec: ActorRecord, view: dict[str, list[str]]) -> str | None:
        """Why a child may not start: its grants after a restart (a link swapped in since its spawn
        checked them), or its paths as its worker gets them (resolved once), beyond its parent's."""
        spec, p = rec.spec, self.registry.get(rec.spec.parent or "")
        if p is None:
            return None
        again = rec.run.number > 1 and attenuation.beyond(p.manifest, p.spec.base, spec.manifest, spec.base,
                                                          self.config.limits)
        return again or sandbox.view_beyond(view, sandbox.view(p.manifest, p.spec.base))

    def _not_spawned(self, rec: ActorRecord, outcome: Outcome) -> None:
        """Stopped while its component compiled, it cannot be compiled (see compiles), or a child's
        grants or paths are no longer within its parent's: no worker is forked."""
        if outcome.error is None:
            return self._finish_stop(rec)
        rec.run.report = exits.reported(f"start:{outcome.reason}", outcome.error)
        self._exited(rec, 0)

    def _limit(self, rec: ActorRecord, pid: int) -> bool:
        """The worker's cgroup gets the actor's limits before its pid is known to anyone else (the
        hello's answer lets actor code run), or the start fails. Whether the worker may go on."""
        run = rec.run
        if run.pid == pid and (run.group is not None or run.kill_reason):
            return run.group is not None
        self.registry.set_pid(rec, pid)
        try:
            run.group = self.limits.for_worker(pid, rec.spec.limits.process_memory, rec.spec.limits.cpu)
        except LimitsRefused as e:
            run.kill_reason, run.kill_detail = "start:limits", str(e)
            log.error("actor %s: %s", rec.actor_id, e)
            self._signal(rec, signal.SIGKILL)
            return False
        return True

    def _ready(self, rec: ActorRecord) -> None:
        """Its init is done (said once: a second ready announces nothing): who waits for it hears so,
        unless it is being stopped (they hear that once it has exited: _finish_stop); an ordered restart goes on."""
        if rec.run.stop_reason is None and rec.run.ready is None:
            rec.status = Status.RUNNING
            rec.run.ready = self.clock()
            rec.ready_at = self.wall()
            self.directory.up(rec)
            for cb in self.start_waiters.pop(rec.actor_id, []):
                cb(None)
        cont, rec.on_ready_next = rec.on_ready_next, None
        if cont is not None:
            cont()

    # ---- messages from workers and the fork server -------------------------------------------

    def on_fork_report(self, report: dict[str, Any]) -> None:
        op = report.get("op")
        if op == "spawned":
            rec = self.registry.get(report["actor"])
            if rec is not None:
                self._limit(rec, report["pid"])
                rec.run.stats["pid_started"] = report["pid"]
        elif op == "exited":
            rec = self.registry.by_pid.get(report["pid"])
            if rec is not None:
                exits.seccomp(rec, report.get("seccomp"))
                self._exited(rec, report["status"])
        elif op == "gone":
            log.error("the worker fork server died; its workers go with it")
            for rec in list(self.registry):
                if rec.alive:
                    rec.run.kill_reason = rec.run.kill_reason or "fork server died"
                    self._exited(rec, -signal.SIGKILL)

    def on_worker(self, rec: ActorRecord, header: dict[str, Any], data: list[bytes]) -> None:
        kind = header["k"]
        if kind == "hello":
            if not self._limit(rec, header["pid"]):
                return          # being killed: no answer lets its actor run
            rec.run.endpoint, rec.run.inbox_key = header["endpoint"], tickets.new_key()
            fields, frames = rec.hello_answer()
            self.outbox.to_worker(rec.actor_id, protocol.ok(header["id"], **fields), *frames)
        elif kind == "ready":
            self._ready(rec)
        elif kind in ("failed", "exiting"):
            rec.run.report = exits.reported(header["reason"], header.get("error") if kind == "failed" else None)
            if kind == "exiting" and header.get("has_data") and data:
                rec.run.report.data = data[0]
            if "id" in header:
                self.outbox.to_worker(rec.actor_id, protocol.ok(header["id"]))
        elif kind == "heartbeat":           # what a worker counts, and nothing else (each key is kept)
            rec.run.stats.update({k: v for k in HEARTBEAT_STATS if isinstance(v := header.get(k), int)})

    def check_hangs(self) -> None:
        for rec, reason in hangs.overdue(self.registry, self.clock()):
            log.error("actor %s (%s) is not responding; killing it", rec.actor_id, rec.name)
            rec.run.kill_reason = reason
            self._signal(rec, signal.SIGKILL)

    def _signal(self, rec: ActorRecord, sig: int) -> None:
        if rec.pid is not None:
            self.launcher.signal(rec.pid, sig)

    # ---- exits -----------------------------------------------------------------------------

    def _exited(self, rec: ActorRecord, status: int) -> None:
        """One incarnation ended: classify, decide, record the decision durably, carry it out."""
        exit_ = exits.classify(rec, status)
        was_starting = rec.status in (Status.STARTING, Status.RESTARTING)
        run = rec.run
        self.registry.set_pid(rec, None)
        self.registry.bind(rec, None)
        if run.group is not None:
            run.group.remove_soon(self.outbox.later)
            run.group = None
        run.endpoint = None
        rec.last_exit = exit_
        if exit_.kind == ExitKind.ABNORMAL:
            rec.last_error = f"{exit_.reason}: {exit_.error}" if exit_.error else exit_.reason
        self.directory.down(rec)
        self.outbox.fail_pending_for(rec.actor_id, f"actor {rec.actor_id} stopped ({exit_.reason})")
        action, detail = self._decide(rec, exit_, was_starting)
        log.info("actor %s (%s) exited: %s %s%s -> %s", rec.actor_id, rec.name, exit_.kind, exit_.reason,
                 f" ({exit_.error})" if exit_.error else "", action)
        # "at": incarnations are counted anew by each server, and the chain links a record it
        # holds at the head already only once (a record sent again after a chain restart)
        self.outbox.record(rec.actor_id, "lifecycle/exit", {**exit_.to_dict(), "incarnation": run.number,
                                                            "data": exit_.data, "action": str(action),
                                                            "at": int(self.wall() * 1000)},
                           then=lambda: self._carry_out(rec, exit_, action, detail))

    def _decide(self, rec: ActorRecord, exit_: Exit, was_starting: bool) -> tuple[Action, Any]:
        """What happens next, counting the restart against the supervisor's intensity."""
        if rec.run.stop_reason is not None:
            return Action.STOPPED, None
        if was_starting and rec.run.number == 1:
            return Action.START_FAILED, None
        if self.stopping or not restart.should_restart(rec.manifest.restart.type, exit_.kind):
            return Action.EXITED, None
        parent = self.registry.get(rec.parent) if rec.parent else None
        c = self.config
        if parent is None:       # the root gives each top-level actor a budget of its own
            flags = restart.Flags(c.strategy, c.intensity, c.period)
            rec.own_restarts, exceeded = restart.add_restart(rec.own_restarts, self.clock(), flags.period,
                                                             flags.intensity)
        else:                    # the children of one actor share its budget (OTP)
            flags = restart.Flags.of(parent.manifest.restart)
            parent.child_restarts, exceeded = restart.add_restart(parent.child_restarts, self.clock(),
                                                                  flags.period, flags.intensity)
        if exceeded:
            why = f"restart intensity exceeded ({flags.intensity} restarts within {flags.period:g}s)"
            return (Action.GIVE_UP if parent is None else Action.ESCALATE), why
        siblings = self.registry.siblings(rec.parent)
        types = {c: self.registry.actors[c].manifest.restart.type for c in siblings if c in self.registry.actors}
        return Action.RESTART, restart.plan(flags.strategy, siblings, rec.actor_id, types)

    def _carry_out(self, rec: ActorRecord, exit_: Exit, action: Action, detail: Any) -> None:
        cont, rec.on_ready_next = rec.on_ready_next, None
        if cont is not None and action in (Action.STOPPED, Action.EXITED):   # ended before it was ready:
            cont()                                          # the ordered restart goes on (not when it failed)
        self._forget_children(rec)
        self._notify_parent(rec, exit_)
        err = exits.start_error(rec, exit_)        # (an exit is rare: made whether anyone waits or not)
        for cb in self.start_waiters.pop(rec.actor_id, []) if action not in (Action.STOPPED, Action.RESTART) else ():
            cb(err)         # a start (or a restart asked for) that is not coming
        if action == Action.STOPPED:
            self._finish_stop(rec)
        elif action == Action.START_FAILED:
            rec.status = Status.FAILED
            (self.remove if rec.run.reason is None else self.directory.gone)(rec, err)   # new: forgotten
        elif action == Action.EXITED:
            rec.status = Status.FAILED if exit_.kind == ExitKind.ABNORMAL else Status.EXITED
            self.directory.gone(rec, Refused(f"actor {rec.actor_id} is {rec.status}"))
        elif action in (Action.GIVE_UP, Action.ESCALATE):
            rec.status = Status.FAILED
            self.directory.gone(rec, Refused(f"actor {rec.actor_id} failed"))
            parent = self.registry.actors[rec.parent] if rec.parent else None
            if action == Action.GIVE_UP:
                rec.last_error = f"{rec.last_error or exit_.reason}; {detail}: left stopped"
                log.error("actor %s (%s): %s; left stopped", rec.actor_id, rec.name, detail)
            elif parent is not None:
                log.error("supervisor actor %s (%s): %s; it fails", parent.actor_id, parent.name, detail)
                self._escalate(parent, detail)
        elif action == Action.RESTART:
            self._restart(rec, exit_, detail)
        if action in (Action.EXITED, Action.GIVE_UP, Action.ESCALATE) and rec.parent is None and not self.stopping:
            self.saved.save(rec)            # how it ended, for the next server (not a stop: supervisor.persist)

    def _forget_children(self, rec: ActorRecord) -> None:
        """An incarnation's children end with it (its next one spawns its own); their chains stay.
        They are detached at once, so a next incarnation that is ready before they have stopped
        never counts them as its own; they leave the registry once stopped."""
        kids = call_off(self.registry.descendants(rec))
        if not kids:
            return
        rec.children.clear()

        def forget() -> None:
            for k in kids:
                if not k.alive:
                    self.registry.remove(k)
                    self.directory.gone(k, NotFound(f"actor {k.actor_id} ended with its parent {rec.name}"))
        self.stops.many([k for k in kids if k.alive], f"parent {rec.name} ended", forget, by_parent=True,
                        flat=True)

    def _notify_parent(self, rec: ActorRecord, exit_: Exit) -> None:
        """The parent's supervisor-handlers hear of a child's exit, unless the parent asked for it."""
        parent = self.registry.get(rec.parent) if rec.parent else None
        if parent is None or not parent.alive or exit_.by_parent:
            return
        header = {"k": "msg", "what": exits.parent_news(exit_), "child": rec.actor_id, "reason": exit_.reason,
                  "error": exit_.error or "", "has_data": exit_.data is not None}
        self.outbox.to_worker(parent.actor_id, header, *([exit_.data] if exit_.data is not None else []))

    # ---- the policy --------------------------------------------------------------------------

    def _restart(self, rec: ActorRecord, exit_: Exit, p: restart.Plan) -> None:
        """Stops the plan's siblings (reverse start order), waits the backoff, starts in order;
        what is stopped meanwhile (by anyone, or the server) is not started."""
        ran = self.clock() - rec.run.ready if rec.run.ready is not None else 0.0
        delay, rec.backoff_attempt = restart.next_backoff(rec.manifest.restart.backoff, rec.backoff_attempt, ran,
                                                          self.rng)
        rec.status = Status.RESTARTING
        reason = f"{exit_.kind}: {exit_.reason}"
        due = object()
        for r in filter(None, map(self.registry.get, p.start)):     # before the stops: a later ticket wins
            r.restart_due = due

        def restart_all() -> None:
            for dropped in filter(None, map(self.registry.get, p.drop)):
                dropped.status = Status.EXITED
            self._start_in_order([self.registry.actors[c] for c in p.start if c in self.registry.actors], reason, due)

        def after_stop() -> None:
            self.outbox.later(delay, restart_all) if delay > 0 else restart_all()
        self.stops.many([self.registry.actors[c] for c in p.stop if c in self.registry.actors],
                        f"restart (after {rec.name} ended)", after_stop, by_parent=True)

    def _start_in_order(self, recs: list[ActorRecord], reason: str, due: object) -> None:
        """Starts each after the previous is ready (OTP start order); state per the manifest."""
        recs = [r for r in recs if r.restart_due is due and not r.alive and not self.stopping]
        if not recs:
            return
        first, rest = recs[0], recs[1:]
        first.restart_due = None
        first.count_restart()
        first.on_ready_next = (lambda: self._start_in_order(rest, reason, due)) if rest else None
        self._launch(first, reason)

    def _escalate(self, sup: ActorRecord, why: str) -> None:
        """A supervising actor fails: its children stop, then it does, abnormally."""
        def kill_it() -> None:
            sup.run.kill_reason = "escalation"
            sup.run.kill_detail = why
            if sup.alive:
                self._signal(sup, signal.SIGKILL)
        self.stops.many(call_off(self.registry.descendants(sup)), "supervisor failed", kill_it, by_parent=True,
                        flat=True)

    # ---- stopping ----------------------------------------------------------------------------

    def stop(self, rec: ActorRecord, reason: str, then: Done, by_parent: bool = False) -> None:
        """Stops an actor and its children (children first, in reverse start order); a restart
        any of them waits for is called off."""
        call_off([rec, *self.registry.descendants(rec)])
        self.stops.stop(rec, reason, then, by_parent)

    def _finish_stop(self, rec: ActorRecord) -> None:
        waiting = self.start_waiters.pop(rec.actor_id, [])    # (not a restart's, which the stop starts)
        self.stops.finished(rec)
        for cb in waiting:
            cb(ActorFailed(f"actor {rec.name} was stopped before it was ready"))

    def restart_now(self, rec: ActorRecord, reason: str, on_ready: Ready) -> None:
        """Stops an actor (and its children) and starts its next incarnation, by request."""
        due = rec.restart_due = object()

        def relaunch() -> None:
            if rec.restart_due is not due or self.stopping or self.registry.get(rec.actor_id) is not rec:
                return on_ready(ActorFailed(f"actor {rec.name} was stopped before it restarted"))
            rec.restart_due = None
            rec.count_restart()
            self.start_waiters.setdefault(rec.actor_id, []).append(on_ready)
            self._launch(rec, reason)
        call_off(self.registry.descendants(rec))
        self.stops.stop(rec, reason, relaunch, by_parent=True)

    def remove(self, rec: ActorRecord, why: TheaterError | None = None) -> None:
        """Forgets a stopped actor and its children, or a new one whose first start failed (issue 12)."""
        for child in self.registry.descendants(rec):
            self.registry.remove(child)
        self.registry.remove(rec)
        self.saved.remove(rec.actor_id)
        self.directory.gone(rec, why or NotFound(f"actor {rec.actor_id} was stopped"))

    def stop_all(self) -> None:
        """Server shutdown: every top-level actor in reverse start order, each after its children."""
        self.stopping = True
        roots = [self.registry.actors[r] for r in reversed(self.registry.roots) if r in self.registry.actors]
        self.stops.many(roots, "server stopping", lambda: None, by_parent=True)

    def idle(self) -> bool:
        return not any(r.alive for r in self.registry)


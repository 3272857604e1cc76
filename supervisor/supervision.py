"""Actor lifecycles and the supervision tree: start, stop, exit, restart (Erlang/OTP semantics).

The decisions are the pure functions of ``restart``; this module carries them out. Every
incarnation ends in ``_exited`` (the fork server reports the process's exit status):
the exit is classified (normal, shutdown or abnormal, with a reason), recorded in the
actor's chain as ``lifecycle/exit``, and then either finishes a stop someone asked for,
or goes to the supervisor's policy: the parent actor's callbacks, then restart by type,
strategy and intensity, escalating to the grandparent when intensity is exceeded. At the
root (the server) an actor whose restarts exceed the intensity is marked failed and left
stopped.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from theater import protocol
from theater.errors import ActorFailed, ComponentError, ManifestError, NotFound, Refused, TheaterError
from theater.events import encode_data
from theater.ids import new_actor_id
from theater.manifest import Manifest

from . import restart
from .launch import describe_status, signal_name
from .registry import EXITED, FAILED, RESTARTING, RUNNING, STARTING, STOPPING, ActorRecord, Exit, Registry

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("theater.server")

# A worker must say hello and finish init within this long (compiling a large component
# the first time takes seconds; the cache makes later starts milliseconds).
STARTUP_TIMEOUT = 60.0
# A worker silent for its call timeout plus this long is called hung and killed; it sends
# a heartbeat every 2 s when idle, so this is several missed beats.
HANG_GRACE = 10.0
# Tasks (threads) a worker may have: main, ZeroMQ's I/O thread, the watchdog, and
# wasmtime's compile threads on a cache miss. A cap, not a budget.
WORKER_PIDS = 256
# Descriptors a worker may open: its sockets (one per peer it talks to), the compiled
# component's mapping, the store.
WORKER_NOFILE = 1024


@dataclass
class Flags:
    """A supervisor's own settings (OTP's sup_flags): how it restarts its children."""

    strategy: str = "one_for_one"
    intensity: int = 3
    period: float = 5.0




def _start_error(rec: ActorRecord, exit_: Exit) -> TheaterError:
    """Why a first start failed, as the kind of error it is (a bad component is bad input)."""
    kind = exit_.reason.removeprefix("start:")
    if kind == "component":
        return ComponentError(f"{rec.manifest.source}: component {rec.manifest.component!r}: {exit_.error}")
    if kind == "manifest":
        return ManifestError(f"{exit_.error}")
    return ActorFailed(f"actor {rec.name} failed to start: {exit_.error or exit_.reason}")

Done = Callable[[], None]


class Supervision:
    def __init__(self, server: Server, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.server = server
        self.clock = clock
        self.rng = rng or random.Random()
        self.root_history: list[float] = []
        self.start_waiters: dict[str, list[Callable[[TheaterError | None], None]]] = {}
        self.stop_waiters: dict[str, list[Done]] = {}

    @property
    def registry(self) -> Registry:
        return self.server.registry

    # ---- starting ------------------------------------------------------------------------

    def start(self, manifest: Manifest, text: str, base: str, component: str, init_state: bytes | None,
              parent: str | None = None, on_ready: Callable[[TheaterError | None], None] | None = None,
              actor_id: str | None = None) -> ActorRecord:
        """Starts a new actor (or, given ``actor_id``, brings back a saved one, resuming its state)."""
        rec = ActorRecord(actor_id or new_actor_id(), manifest, text, base, component, init_state, parent=parent,
                          limits=manifest.effective_limits(self.server.config.limits))
        self.registry.add(rec)
        if on_ready is not None:
            self.start_waiters.setdefault(rec.actor_id, []).append(on_ready)
        if actor_id is not None:            # restored after a server restart: not counted as a restart
            rec.resume_mode = rec.restart_mode
        if parent is None:
            self.server.saved.save(rec)
        self._launch(rec, "server restart" if actor_id else None)
        return rec

    def _launch(self, rec: ActorRecord, reason: str | None = None) -> None:
        rec.incarnation += 1
        rec.status = STARTING if rec.incarnation == 1 else RESTARTING
        rec.stop_reason = None
        rec.kill_reason = rec.kill_detail = None
        rec.worker_report = None
        rec.restart_history = []         # a restarted supervisor counts its children's restarts afresh
        rec.restart_reason = reason
        rec.last_seen = time.monotonic()
        confine = {"user": self.server.user, "nofile": WORKER_NOFILE,
                   "data_limit": rec.limits.process_memory if self.server.limits.kind == "rlimit" else 0}
        self.server.forkserver.spawn(rec.actor_id, rec.name, rec.component, rec.limits.fuel > 0, confine)

    def _limit(self, rec: ActorRecord, pid: int) -> None:
        """The fork server reported the worker's pid: its cgroup, which it made and joined as a
        spare, gets this actor's limits (before the worker's hello is answered)."""
        if rec.pid == pid and rec.group is not None:
            return
        self.registry.set_pid(rec, pid)
        lim = rec.limits
        try:
            rec.group = self.server.limits.create(f"w-{pid}", lim.process_memory, lim.cpu, WORKER_PIDS)
        except OSError as e:      # the host's cgroups refused: run it anyway, and say so
            log.error("actor %s: cannot set its cgroup's limits (%s); running it without", rec.actor_id, e)
            rec.group = None

    def _ready(self, rec: ActorRecord) -> None:
        rec.status = RUNNING
        rec.ready_at = time.time()
        self.server.directory.up(rec)
        for cb in self.start_waiters.pop(rec.actor_id, []):
            cb(None)
        cont = rec.on_ready_next
        rec.on_ready_next = None
        if cont is not None:
            cont()

    def config(self, rec: ActorRecord) -> tuple[dict[str, Any], list[bytes]]:
        """What a new worker needs to become this actor (the answer to its hello)."""
        has_init = rec.init_state is not None
        fields = {"manifest": rec.manifest_text, "source": rec.manifest.source, "base": rec.base,
                  "component": rec.component, "mode": rec.resume_mode, "incarnation": rec.incarnation,
                  "has_init": has_init, "reason": rec.restart_reason, "limits": asdict(rec.limits)}
        return fields, [rec.init_state] if has_init and rec.init_state is not None else []

    # ---- messages from workers and the fork server -------------------------------------------

    def on_fork_report(self, report: dict[str, Any]) -> None:
        op = report.get("op")
        if op == "spawned":
            rec = self.registry.get(report["actor"])
            if rec is not None:
                self._limit(rec, report["pid"])
                rec.stats["pid_started"] = report["pid"]
                early_hello = self.server.gate.spawned(rec)
                if early_hello is not None:
                    self.server.worker_message(*early_hello)
        elif op == "exited":
            rec = self.registry.by_pid.get(report["pid"])
            if rec is not None:
                self._exited(rec, report["status"])
        elif op == "gone":
            log.error("the worker fork server died; its workers go with it")
            for rec in list(self.registry):
                if rec.alive:
                    rec.kill_reason = rec.kill_reason or "fork server died"
                    self._exited(rec, -signal.SIGKILL)

    def on_worker(self, rec: ActorRecord, header: dict[str, Any], data: list[bytes]) -> None:
        kind = header["k"]
        if kind == "hello":
            self._limit(rec, header["pid"])
            fields, frames = self.config(rec)
            rec.endpoint = header["endpoint"]
            self.server.to_worker(rec.actor_id, protocol.ok(header["id"], **fields), *frames)
        elif kind == "ready":
            self._ready(rec)
        elif kind == "failed":
            rec.worker_report = Exit("abnormal", header["reason"], header["error"])
            self._acknowledge(rec, header)
        elif kind == "exiting":
            reason = header["reason"]
            data_ = data[0] if header.get("has_data") and data else None
            rec.worker_report = Exit("normal" if reason == "shutdown" else "shutdown", reason, None, data_)
            self._acknowledge(rec, header)
        elif kind == "heartbeat":
            rec.stats.update({k: v for k, v in header.items() if isinstance(v, int)})

    def _acknowledge(self, rec: ActorRecord, header: dict[str, Any]) -> None:
        if "id" in header:
            self.server.to_worker(rec.actor_id, protocol.ok(header["id"]))

    def check_hangs(self, now: float) -> None:
        for rec in list(self.registry):
            if not rec.alive or rec.kill_reason:
                continue
            limit = STARTUP_TIMEOUT if rec.status in (STARTING, RESTARTING) else rec.limits.call_timeout + HANG_GRACE
            if now - rec.last_seen > limit:
                log.error("actor %s (%s) is not responding; killing it", rec.actor_id, rec.name)
                rec.kill_reason = "hang" if rec.status not in (STARTING, RESTARTING) else "start timeout"
                self._signal(rec, signal.SIGKILL)

    def _signal(self, rec: ActorRecord, sig: int) -> None:
        if rec.pid is not None:
            self.server.forkserver.signal(rec.pid, sig)

    # ---- exits -----------------------------------------------------------------------------

    def _classify(self, rec: ActorRecord, status: int) -> Exit:
        how, value = describe_status(status) if status >= 0 else ("signal", -status)
        code = value if how == "exit" else -value
        report = rec.worker_report
        if rec.kill_reason:
            return Exit("abnormal", rec.kill_reason, rec.kill_detail or f"the server killed it ({rec.kill_reason})",
                        status=code)
        if report is not None:
            if rec.stop_reason and report.kind == "shutdown":
                return Exit("shutdown", rec.stop_reason, None, status=code, by_parent=rec.stop_by_parent)
            return Exit(report.kind, report.reason, report.error, report.data, code)
        if rec.stop_reason:
            what = f"killed by {signal_name(value)} after its shutdown timeout" if how == "signal" else None
            return Exit("shutdown", rec.stop_reason, what, status=code, by_parent=rec.stop_by_parent)
        if how == "signal" and value == signal.SIGKILL and rec.group is not None and rec.group.oom_killed():
            return Exit("abnormal", "oom", f"killed by the kernel: over its process memory limit "
                        f"({rec.limits.process_memory} bytes)", status=code)
        if how == "signal":
            reason = "killed" if value == signal.SIGKILL else "signal"
            return Exit("abnormal", reason, f"the worker process died of {signal_name(value)}", status=code)
        return Exit("abnormal", "crash", f"the worker process exited with status {value}", status=code)

    def _exited(self, rec: ActorRecord, status: int) -> None:
        """One incarnation ended: classify, decide, record the decision durably, carry it out."""
        exit_ = self._classify(rec, status)
        was_starting = rec.status in (STARTING, RESTARTING)
        self.registry.set_pid(rec, None)
        self.registry.bind(rec, None)
        self.server.gate.exited(rec)
        if rec.group is not None:
            self.server.remove_group(rec.group)
            rec.group = None
        rec.endpoint = None
        rec.last_exit = exit_
        if exit_.kind == "abnormal":
            rec.last_error = f"{exit_.reason}: {exit_.error}" if exit_.error else exit_.reason
        self.server.directory.down(rec)
        self.server.fail_pending_for(rec.actor_id, f"actor {rec.actor_id} stopped ({exit_.reason})")
        action, detail = self._decide(rec, exit_, was_starting)
        log.info("actor %s (%s) exited: %s %s%s -> %s", rec.actor_id, rec.name, exit_.kind, exit_.reason,
                 f" ({exit_.error})" if exit_.error else "", action)
        self._record(rec, "lifecycle/exit", {**exit_.to_dict(), "incarnation": rec.incarnation,
                                             "data": exit_.data, "action": action},
                     then=lambda: self._carry_out(rec, exit_, action, detail))

    def _record(self, rec: ActorRecord, event_type: str, value: dict[str, Any], then: Done) -> None:
        """Appends a server-side event to the actor's chain, then continues (once it is durable)."""
        def done(header: dict[str, Any], _data: list[bytes]) -> None:
            if header["k"] == "error":
                log.error("could not record %s for %s: %s", event_type, rec.actor_id, header.get("error"))
            then()
        self.server.ask_chain({"k": "record", "actor": rec.actor_id, "type": event_type}, encode_data(value),
                              then=done)

    def _decide(self, rec: ActorRecord, exit_: Exit, was_starting: bool) -> tuple[str, Any]:
        """What happens next (counting the restart against the supervisor's intensity):
        stopped | start_failed | exited | restart | give_up | escalate."""
        if rec.stop_reason is not None:
            return "stopped", None
        if was_starting and rec.incarnation == 1:
            return "start_failed", None
        if self.server.stopping or not restart.should_restart(rec.manifest.restart.type, exit_.kind):
            return "exited", None
        parent = self.registry.get(rec.parent) if rec.parent else None
        flags, history = self._flags(parent)
        history[:], exceeded = restart.add_restart(history, self.clock(), flags.period, flags.intensity)
        if exceeded:
            why = f"restart intensity exceeded ({flags.intensity} restarts within {flags.period:g}s)"
            return ("give_up" if parent is None else "escalate"), why
        siblings = self.registry.siblings(rec.parent)
        types = {c: self.registry.actors[c].manifest.restart.type for c in siblings if c in self.registry.actors}
        return "restart", restart.plan(flags.strategy, siblings, rec.actor_id, types)

    def _carry_out(self, rec: ActorRecord, exit_: Exit, action: str, detail: Any) -> None:
        self._forget_children(rec)
        self._notify_parent(rec, exit_)
        if action == "stopped":
            self._finish_stop(rec)
        elif action == "start_failed":
            rec.status = FAILED
            err = _start_error(rec, exit_)
            for cb in self.start_waiters.pop(rec.actor_id, []):
                cb(err)
            self.server.directory.gone(rec, err)
        elif action == "exited":
            rec.status = FAILED if exit_.kind == "abnormal" else EXITED
            self.server.directory.gone(rec, Refused(f"actor {rec.actor_id} is {rec.status}"))
        elif action == "give_up":
            rec.status = FAILED
            rec.last_error = f"{rec.last_error or exit_.reason}; {detail}: left stopped"
            self.server.directory.gone(rec, Refused(f"actor {rec.actor_id} failed"))
            log.error("actor %s (%s): %s; left stopped", rec.actor_id, rec.name, detail)
        elif action == "escalate":
            parent = self.registry.actors[rec.parent] if rec.parent else None
            rec.status = FAILED
            if parent is not None:
                log.error("supervisor actor %s (%s): %s; it fails", parent.actor_id, parent.name, detail)
                self._escalate(parent, detail)
        elif action == "restart":
            self._restart(rec, exit_, detail)

    def _forget_children(self, rec: ActorRecord) -> None:
        """An incarnation's children end with it (its next one spawns its own); their chains stay."""
        kids = self.registry.descendants(rec)
        if not kids:
            return

        def forget() -> None:
            for k in kids:
                if not k.alive:
                    self.registry.remove(k)
            rec.children[:] = [c for c in rec.children if c in self.registry.actors]
        self._stop_many([k for k in kids if k.alive], f"parent {rec.name} ended", forget, by_parent=True,
                        flat=True)

    def _notify_parent(self, rec: ActorRecord, exit_: Exit) -> None:
        """The parent's supervisor-handlers hear of a child's exit, unless the parent asked for it."""
        parent = self.registry.get(rec.parent) if rec.parent else None
        if parent is None or not parent.alive or exit_.by_parent:
            return
        if exit_.kind == "abnormal":
            what = "child_error"
        elif exit_.reason == "shutdown":
            what = "child_exit"
        else:
            what = "child_external_stop"
        header = {"k": "msg", "what": what, "child": rec.actor_id, "reason": exit_.reason,
                  "error": exit_.error or "", "has_data": exit_.data is not None}
        self.server.to_worker(parent.actor_id, header, *([exit_.data] if exit_.data is not None else []))

    # ---- the policy --------------------------------------------------------------------------

    def _flags(self, parent: ActorRecord | None) -> tuple[Flags, list[float]]:
        if parent is None:
            c = self.server.config
            return Flags(c.strategy, c.intensity, c.period), self.root_history
        r = parent.manifest.restart
        return Flags(r.strategy, r.intensity, r.period), parent.restart_history

    def _restart(self, rec: ActorRecord, exit_: Exit, p: restart.Plan) -> None:
        """Stops the plan's siblings (reverse start order), waits the backoff, starts in order."""
        delay = self._backoff(rec)
        rec.status = RESTARTING
        reason = f"{exit_.kind}: {exit_.reason}"

        def restart_all() -> None:
            for cid in p.drop:
                dropped = self.registry.get(cid)
                if dropped is not None:
                    dropped.status = EXITED
            self._start_in_order([self.registry.actors[c] for c in p.start if c in self.registry.actors], reason)

        def after_stop() -> None:
            if delay > 0:
                self.server.later(delay, restart_all)
            else:
                restart_all()
        self._stop_many([self.registry.actors[c] for c in p.stop if c in self.registry.actors],
                        f"restart (after {rec.name} ended)", after_stop, by_parent=True)

    def _backoff(self, rec: ActorRecord) -> float:
        b = rec.manifest.restart.backoff
        if b is None:
            return 0.0
        ran = time.time() - (rec.ready_at or time.time())
        if ran > b.max:
            rec.backoff_attempt = 0          # it ran well for a while: start the curve over
        delay = restart.backoff_delay(rec.backoff_attempt, b.min, b.max, b.jitter, self.rng)
        rec.backoff_attempt += 1
        return delay

    def _start_in_order(self, recs: list[ActorRecord], reason: str) -> None:
        """Starts each after the previous is ready (OTP start order); state per the manifest."""
        if not recs:
            return
        first, rest = recs[0], recs[1:]
        first.prepare_restart()
        first.on_ready_next = (lambda: self._start_in_order(rest, reason)) if rest else None
        self._launch(first, reason)

    def _escalate(self, sup: ActorRecord, why: str) -> None:
        """A supervising actor fails: its children stop, then it does, abnormally."""
        def kill_it() -> None:
            sup.kill_reason = "escalation"
            sup.kill_detail = why
            if sup.alive:
                self._signal(sup, signal.SIGKILL)
        self._stop_many(self.registry.descendants(sup), "supervisor failed", kill_it, by_parent=True,
                        flat=True)

    # ---- stopping ----------------------------------------------------------------------------

    def stop(self, rec: ActorRecord, reason: str, then: Done, by_parent: bool = False) -> None:
        """Stops an actor and its children (children first, in reverse start order)."""
        def stop_self() -> None:
            self._stop_one(rec, reason, then, by_parent)
        kids = [self.registry.actors[c] for c in reversed(rec.children) if c in self.registry.actors]
        self._stop_many(kids, f"parent {rec.name} stopping", stop_self, by_parent=True)

    def _stop_many(self, recs: list[ActorRecord], reason: str, then: Done, by_parent: bool,
                   flat: bool = False) -> None:
        """Stops ``recs`` one after another in the given order, then calls ``then``."""
        if not recs:
            then()
            return
        first, rest = recs[0], recs[1:]

        def next_one() -> None:
            self._stop_many(rest, reason, then, by_parent, flat)
        if flat:
            self._stop_one(first, reason, next_one, by_parent)
        else:
            self.stop(first, reason, next_one, by_parent)

    def _stop_one(self, rec: ActorRecord, reason: str, then: Done, by_parent: bool) -> None:
        if not rec.alive:
            if rec.status in (STARTING, RESTARTING, RUNNING):
                rec.status = EXITED
            then()
            return
        self.stop_waiters.setdefault(rec.actor_id, []).append(then)
        if rec.stop_reason is not None:
            return                          # already stopping; we just wait for it too
        rec.stop_reason = reason
        rec.stop_by_parent = by_parent
        rec.status = STOPPING
        timeout = rec.manifest.restart.shutdown
        if timeout is None:                 # brutal_kill
            self._signal(rec, signal.SIGKILL)
            return
        self._signal(rec, signal.SIGTERM)
        incarnation = rec.incarnation

        def too_slow() -> None:
            if rec.alive and rec.incarnation == incarnation:
                log.warning("actor %s (%s) did not stop within %gs; killing it", rec.actor_id, rec.name, timeout)
                self._signal(rec, signal.SIGKILL)
        self.server.later(timeout, too_slow)

    def _finish_stop(self, rec: ActorRecord) -> None:
        if rec.status == STOPPING:
            rec.status = EXITED
        for cb in self.stop_waiters.pop(rec.actor_id, []):
            cb()
        for cb in self.start_waiters.pop(rec.actor_id, []):
            cb(ActorFailed(f"actor {rec.name} was stopped before it was ready"))

    def restart_now(self, rec: ActorRecord, reason: str, on_ready: Callable[[TheaterError | None], None]) -> None:
        """Stops an actor (and its children) and starts its next incarnation, by request."""
        def relaunch() -> None:
            rec.prepare_restart()
            self.start_waiters.setdefault(rec.actor_id, []).append(on_ready)
            self._launch(rec, reason)
        self.stop(rec, reason, relaunch, by_parent=True)

    def remove(self, rec: ActorRecord) -> None:
        """Forgets a stopped actor and its children."""
        for child in self.registry.descendants(rec):
            self.registry.remove(child)
        self.registry.remove(rec)
        self.server.saved.remove(rec.actor_id)
        self.server.directory.gone(rec, NotFound(f"actor {rec.actor_id} was stopped"))

    def stop_all(self) -> None:
        """Server shutdown: every top-level actor in reverse start order, each after its children."""
        roots = [self.registry.actors[r] for r in reversed(self.registry.roots) if r in self.registry.actors]
        self._stop_many(roots, "server stopping", lambda: None, by_parent=True)

    def idle(self) -> bool:
        return not any(r.alive for r in self.registry)

    def lookup_running(self, key: str) -> ActorRecord:
        rec = self.registry.lookup(key)
        if rec.status != RUNNING:
            raise Refused(f"actor {rec.actor_id} ({rec.name}) is {rec.status}"
                          + (f": {rec.last_error}" if rec.last_error and rec.status == FAILED else ""))
        return rec


"""Every actor the server knows, one record each, and the supervision tree they form.

A record is an actor across its incarnations: its ``ChildSpec`` (what to start: manifest,
component, initial state, parent; fixed), its place in the tree (children in start order),
what its history says (status, restarts, last failure), and ``run``, the current (or last)
``Incarnation``: one worker process, made fresh at each launch, with its pid, address,
heartbeat and how it was asked to end. Top-level actors are children of the root
(``parent is None``). Only the server's loop changes records.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from theater import grants
from theater.bucket import Bucket
from theater.errors import NotFound, Refused, UsageError
from theater.ids import MIN_PREFIX, ambiguous_name
from theater.manifest import Limits, Manifest


class Status(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    FAILED = "failed"
    EXITED = "exited"


class ExitKind(StrEnum):
    """OTP's exit reasons: ``normal`` (it ended itself), ``shutdown`` (its supervisor or an
    operator stopped it), or abnormal (anything else: a crash, a limit, a hang)."""

    NORMAL = "normal"
    SHUTDOWN = "shutdown"
    ABNORMAL = "abnormal"


@dataclass
class Exit:
    """How an incarnation ended, as the server classified it."""

    kind: ExitKind
    reason: str                # shutdown, stopped, trap, error, timeout, fuel, signal, killed, hang, oom, start:...
    error: str | None = None
    data: bytes | None = None  # runtime.shutdown(data)
    status: int | None = None  # exit code, or -signal
    by_parent: bool = False    # stopped by its own supervisor (not "external")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "reason": self.reason, "error": self.error, "status": self.status}


@dataclass(frozen=True)
class ChildSpec:
    """What to start, and where it sits: the same for every incarnation."""

    actor_id: str
    manifest: Manifest
    manifest_text: str
    base: str                          # directory the manifest's relative paths start from
    component: str                     # SHA-256 of the component's wasm
    init_state: bytes | None
    parent: str | None                 # None: a child of the root supervisor
    limits: Limits                     # the server's defaults under what the manifest says

    @property
    def name(self) -> str:
        return self.manifest.name


@dataclass
class Incarnation:
    """One worker process running the actor: made fresh at each launch."""

    number: int
    reason: str | None = None          # why it was started (a restart's cause), told to it and recorded
    mode: str = "init"                 # how it starts: init | resume (from the last committed state)
    launched: float = 0.0              # monotonic, when the launch was asked for
    ready: float | None = None         # monotonic, when its init was done
    last_seen: float = 0.0             # monotonic, its last message
    pid: int | None = None
    endpoint: str | None = None
    inbox_key: bytes | None = None     # what its peers' tickets are made with (theater.tickets)
    ident: bytes | None = None         # its worker's control socket identity (from its hello)
    group: Any = None                  # its cgroup (or rlimit settings), see limits.py
    stop_reason: str | None = None     # why the server asked it to stop
    stop_by_parent: bool = False       # ... and whether its own supervisor asked
    kill_reason: str | None = None     # the server killed it (hang, escalation): an abnormal exit
    kill_detail: str | None = None     # ... and why, in words
    report: Exit | None = None         # what the worker said before exiting
    compiled: dict[str, Any] | None = None   # the compile this start waited for (seconds, peak, bytes)
    stats: dict[str, int] = field(default_factory=dict)
    asks: Bucket | None = None         # its requests' budget, from its first (supervisor.inbox)
    child_query: str | None = None     # its child_state or child_events parked for an answer (supervisor.children)


@dataclass(eq=False)
class ActorRecord:
    spec: ChildSpec
    status: Status = Status.STARTING
    children: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)    # wall clock, for people
    ready_at: float | None = None                           # wall clock, for people
    restarts: int = 0
    child_restarts: list[float] = field(default_factory=list)   # its children's, against its intensity
    own_restarts: list[float] = field(default_factory=list)     # a top-level actor's, against the root's
    last_error: str | None = None
    last_exit: Exit | None = None
    backoff_attempt: int = 0
    next_mode: str = "init"            # how the next incarnation starts: init | resume
    on_ready_next: Callable[[], None] | None = None   # continues an ordered (re)start
    restart_due: object | None = None  # the restart it waits for (a backoff, a stop first); a stop calls it off
    run: Incarnation = field(default_factory=lambda: Incarnation(0))

    @property
    def actor_id(self) -> str:
        return self.spec.actor_id

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def manifest(self) -> Manifest:
        return self.spec.manifest

    @property
    def parent(self) -> str | None:
        return self.spec.parent

    @property
    def pid(self) -> int | None:
        return self.run.pid

    @property
    def alive(self) -> bool:
        return self.run.pid is not None

    @property
    def live(self) -> bool:
        """Starting, running, restarting or stopping: it has a process, or is about to, and so
        holds a place under the bounds on actors (``supervisor.room``); ``alive`` is whether it
        has a pid now."""
        return self.status not in (Status.EXITED, Status.FAILED)

    @property
    def restart_mode(self) -> str:
        """How an incarnation after the first starts: from the last committed state, or init."""
        return "resume" if self.manifest.restart.state == "last" else "init"

    def count_restart(self) -> None:
        self.restarts += 1
        self.next_mode = self.restart_mode

    def hello_answer(self) -> tuple[dict[str, Any], list[bytes]]:
        """What a new worker needs to become this actor's current incarnation."""
        spec, run = self.spec, self.run
        fields = {"manifest": spec.manifest_text, "source": spec.manifest.source, "base": spec.base,
                  "component": spec.component, "mode": run.mode, "incarnation": run.number,
                  "has_init": spec.init_state is not None, "reason": run.reason, "limits": asdict(spec.limits),
                  "compiled": run.compiled, "inbox_key": run.inbox_key.hex() if run.inbox_key else None}
        env = next((h.config for h in spec.manifest.handlers if h.type == "environment"), None)
        if env is not None:         # the worker has a clean environment: it gets the granted values only
            fields["environ"] = grants.granted_environment(env, os.environ)
        return fields, [spec.init_state] if spec.init_state is not None else []

    def summary(self) -> dict[str, Any]:
        return {"id": self.actor_id, "name": self.name, "status": str(self.status), "pid": self.pid,
                "restarts": self.restarts, "last_error": self.last_error, "parent": self.parent}

    def detail(self) -> dict[str, Any]:
        m, lim = self.manifest, self.spec.limits
        return {
            **self.summary(),
            "version": m.version, "description": m.description, "manifest": m.source, "component": self.spec.component,
            "incarnation": self.run.number, "endpoint": self.run.endpoint, "children": list(self.children),
            "started_at": self.started_at, "ready_at": self.ready_at,
            "last_exit": self.last_exit.to_dict() if self.last_exit else None,
            "handlers": [h.type for h in m.handlers],
            "restart": {"type": m.restart.type, "strategy": m.restart.strategy, "intensity": m.restart.intensity,
                        "period": m.restart.period, "shutdown": m.restart.shutdown, "state": m.restart.state},
            "limits": {k: getattr(lim, k) for k in lim.__dataclass_fields__},
            "stats": dict(self.run.stats),
        }


class Registry:
    def __init__(self) -> None:
        self.actors: dict[str, ActorRecord] = {}
        self.roots: list[str] = []          # the root supervisor's children, in start order
        self.by_pid: dict[int, ActorRecord] = {}
        self.by_ident: dict[bytes, ActorRecord] = {}
        # told (record, old pid, new pid) whenever an incarnation's pid is learnt or ends
        self.pid_watchers: list[Callable[[ActorRecord, int | None, int | None], None]] = []

    def __iter__(self) -> Iterator[ActorRecord]:
        return iter(self.actors.values())

    def __len__(self) -> int:
        return len(self.actors)

    def add(self, rec: ActorRecord) -> None:
        self.actors[rec.actor_id] = rec
        self.siblings(rec.parent).append(rec.actor_id)

    def remove(self, rec: ActorRecord) -> None:
        self.actors.pop(rec.actor_id, None)
        siblings = self.siblings(rec.parent)
        if rec.actor_id in siblings:
            siblings.remove(rec.actor_id)
        _reindex(self.by_pid, rec.run.pid, None, rec)
        self.bind(rec, None)

    def launch(self, rec: ActorRecord, run: Incarnation) -> None:
        """A new incarnation replaces the last one (which has no process any more)."""
        self.set_pid(rec, None)
        self.bind(rec, None)
        rec.run = run

    def bind(self, rec: ActorRecord, ident: bytes | None) -> None:
        """Which control connection is this actor's current worker (None: it has none)."""
        _reindex(self.by_ident, rec.run.ident, ident, rec)
        rec.run.ident = ident

    def set_pid(self, rec: ActorRecord, pid: int | None) -> None:
        old = rec.run.pid
        _reindex(self.by_pid, old, pid, rec)
        rec.run.pid = pid
        if old != pid:
            for watch in self.pid_watchers:
                watch(rec, old, pid)

    def siblings(self, parent: str | None) -> list[str]:
        """The children list of ``parent`` (the root's when None), in start order."""
        if parent is None:
            return self.roots
        p = self.actors.get(parent)
        return p.children if p is not None else []

    def get(self, actor_id: str) -> ActorRecord | None:
        return self.actors.get(actor_id)

    def lookup(self, key: str, see: str | None = "theater list") -> ActorRecord:
        """By full id, name, or id prefix (``MIN_PREFIX`` characters at least), exact matches
        first: the rule ``theater.chaindb.ChainReader.resolve`` follows for stored chains.
        NotFound or UsageError say which and why, pointing a person to the command ``see``
        (None: the asker is an actor, which has no commands)."""
        rec = self.actors.get(key)
        if rec is not None:
            return rec
        matches = [r for r in self.actors.values() if r.name == key]
        if not matches and len(key) >= MIN_PREFIX:
            matches = [r for r in self.actors.values() if r.actor_id.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFound(f"no actor {key!r}" + (f" (see `{see}`)" if see else ""))
        raise UsageError(ambiguous_name(key, [r.actor_id for r in matches], see))

    def running(self, key: str) -> ActorRecord:
        """Like ``lookup``, for what only a running actor can take: Refused says what it is instead."""
        rec = self.lookup(key)
        if rec.status != Status.RUNNING:
            raise Refused(f"actor {rec.actor_id} ({rec.name}) is {rec.status}"
                          + (f": {rec.last_error}" if rec.last_error and rec.status == Status.FAILED else ""))
        return rec

    def live_children(self, rec: ActorRecord) -> list[str]:
        return [c for c in rec.children if c in self.actors and self.actors[c].live]

    def line(self, rec: ActorRecord) -> list[ActorRecord]:
        """``rec`` and its ancestors, its top-level actor first."""
        out = [rec]
        while (up := self.actors.get(out[-1].parent or "")) is not None:
            out.append(up)
        return out[::-1]

    def live_beneath(self, line: list[ActorRecord]) -> list[int]:
        """How many live descendants each actor of ``line`` (from ``self.line``) has: one walk of
        the top-level actor's tree, not one for each member (a deep tree would cost its depth
        times its size). An actor with ``m`` members of the line above it counts for those ``m``."""
        above = [0] * (len(line) + 1)       # live actors with exactly m members of the line above them
        stack = [(line[0], 0)]
        while stack:
            rec, m = stack.pop()
            if rec.live and m:
                above[m] += 1
            if m < len(line) and rec is line[m]:
                m += 1
            stack.extend((self.actors[c], m) for c in rec.children if c in self.actors)
        counts, total = [], 0
        for m in range(len(line), 0, -1):   # line[k] has those with more than k members above
            total += above[m]
            counts.append(total)
        return counts[::-1]

    def descendants(self, rec: ActorRecord) -> list[ActorRecord]:
        """Children first in reverse start order, depth first: the order to stop them in (the
        reverse of a walk that takes each actor before its children, in start order). Without
        recursion: a tree restored from before supervisor.room's depth bound may be deeper than
        Python's recursion limit, and it must still stop."""
        out: list[ActorRecord] = []
        stack = list(reversed(rec.children))
        while stack:
            if (child := self.actors.get(stack.pop())) is not None:
                out.append(child)
                stack.extend(reversed(child.children))
        return out[::-1]

    def tree(self) -> list[dict[str, Any]]:
        def node(rec: ActorRecord) -> dict[str, Any]:
            kids = [self.actors[c] for c in rec.children if c in self.actors]
            return {**rec.summary(), "strategy": rec.manifest.restart.strategy,
                    "restart": rec.manifest.restart.type, "children": [node(k) for k in kids]}
        return [node(self.actors[r]) for r in self.roots if r in self.actors]


def _reindex(index: dict[Any, ActorRecord], old: Any, new: Any, rec: ActorRecord) -> None:
    """Moves ``rec`` in ``index`` from key ``old`` to key ``new`` (None: not indexed)."""
    if old is not None:
        index.pop(old, None)
    if new is not None:
        index[new] = rec

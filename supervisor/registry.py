"""Every actor the server knows, one record each, and the supervision tree they form.

A record holds one actor's state across incarnations: its spec (manifest, component,
initial state), its current worker (pid, endpoint, last heartbeat), its status, restart
count, last failure, and its place in the tree (parent, children in start order). Top-level
actors are children of the root (``parent is None``). Only the server's loop changes
records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from theater.errors import NotFound
from theater.manifest import Limits, Manifest

STARTING, RUNNING, STOPPING, RESTARTING, FAILED, EXITED = (
    "starting", "running", "stopping", "restarting", "failed", "exited")


@dataclass
class Exit:
    """How an incarnation ended, as the server classified it."""

    kind: str                  # normal | shutdown | abnormal
    reason: str                # shutdown, stopped, trap, error, timeout, fuel, signal, killed, hang, oom, start:...
    error: str | None = None
    data: bytes | None = None  # runtime.shutdown(data)
    status: int | None = None  # exit code, or -signal
    by_parent: bool = False    # stopped by its own supervisor (not "external")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "error": self.error, "status": self.status}


@dataclass(eq=False)
class ActorRecord:
    actor_id: str
    manifest: Manifest
    manifest_text: str
    base: str                          # directory the manifest's relative paths start from
    component: str                     # SHA-256 of the component's wasm
    init_state: bytes | None
    parent: str | None = None          # None: a child of the root supervisor
    children: list[str] = field(default_factory=list)
    status: str = STARTING
    incarnation: int = 0
    pid: int | None = None
    endpoint: str | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    restarts: int = 0
    restart_history: list[float] = field(default_factory=list)   # this actor's restarts of its children
    last_error: str | None = None
    last_exit: Exit | None = None
    stop_reason: str | None = None     # why the server asked this incarnation to stop
    stop_by_parent: bool = False       # ... and whether its own supervisor asked
    kill_reason: str | None = None     # the server killed it (hang, escalation): an abnormal exit
    kill_detail: str | None = None     # ... and why, in words
    restart_reason: str | None = None  # told to the next incarnation, recorded in lifecycle/start
    backoff_attempt: int = 0
    on_ready_next: Callable[[], None] | None = None   # continues an ordered (re)start
    worker_report: Exit | None = None  # what the worker said before exiting
    stats: dict[str, int] = field(default_factory=dict)
    resume_mode: str = "init"          # how the next incarnation starts: init | resume
    limits: Limits = field(default_factory=Limits)   # the server's defaults under what the manifest says
    group: Any = None                  # this incarnation's cgroup (or rlimit settings), see limits.py
    ident: bytes | None = None         # its worker's control socket identity (from its hello)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def alive(self) -> bool:
        return self.pid is not None

    @property
    def restart_mode(self) -> str:
        """How an incarnation after the first starts: from the last committed state, or init."""
        return "resume" if self.manifest.restart.state == "last" else "init"

    def prepare_restart(self) -> None:
        self.restarts += 1
        self.resume_mode = self.restart_mode

    def summary(self) -> dict[str, Any]:
        return {"id": self.actor_id, "name": self.name, "status": self.status, "pid": self.pid,
                "restarts": self.restarts, "last_error": self.last_error, "parent": self.parent}

    def detail(self) -> dict[str, Any]:
        m = self.manifest
        return {
            **self.summary(),
            "version": m.version, "description": m.description, "manifest": m.source, "component": self.component,
            "incarnation": self.incarnation, "endpoint": self.endpoint, "children": list(self.children),
            "started_at": self.started_at, "ready_at": self.ready_at,
            "last_exit": self.last_exit.to_dict() if self.last_exit else None,
            "handlers": [h.type for h in m.handlers],
            "restart": {"type": m.restart.type, "strategy": m.restart.strategy, "intensity": m.restart.intensity,
                        "period": m.restart.period, "shutdown": m.restart.shutdown, "state": m.restart.state},
            "limits": {k: getattr(self.limits, k) for k in self.limits.__dataclass_fields__},
            "stats": dict(self.stats),
        }


class Registry:
    def __init__(self) -> None:
        self.actors: dict[str, ActorRecord] = {}
        self.roots: list[str] = []          # the root supervisor's children, in start order
        self.by_pid: dict[int, ActorRecord] = {}
        self.by_ident: dict[bytes, ActorRecord] = {}

    def __iter__(self) -> Iterator[ActorRecord]:
        return iter(self.actors.values())

    def __len__(self) -> int:
        return len(self.actors)

    def add(self, rec: ActorRecord) -> None:
        self.actors[rec.actor_id] = rec
        siblings = self.siblings(rec.parent)
        siblings.append(rec.actor_id)

    def remove(self, rec: ActorRecord) -> None:
        self.actors.pop(rec.actor_id, None)
        siblings = self.siblings(rec.parent)
        if rec.actor_id in siblings:
            siblings.remove(rec.actor_id)
        _reindex(self.by_pid, rec.pid, None, rec)
        self.bind(rec, None)

    def bind(self, rec: ActorRecord, ident: bytes | None) -> None:
        """Which control connection is this actor's current worker (None: it has none)."""
        _reindex(self.by_ident, rec.ident, ident, rec)
        rec.ident = ident

    def siblings(self, parent: str | None) -> list[str]:
        """The children list of ``parent`` (the root's when None), in start order."""
        if parent is None:
            return self.roots
        p = self.actors.get(parent)
        return p.children if p is not None else []

    def set_pid(self, rec: ActorRecord, pid: int | None) -> None:
        _reindex(self.by_pid, rec.pid, pid, rec)
        rec.pid = pid

    def get(self, actor_id: str) -> ActorRecord | None:
        return self.actors.get(actor_id)

    def lookup(self, key: str) -> ActorRecord:
        """By full id, unique id prefix, or unique name; NotFound says which and why."""
        rec = self.actors.get(key)
        if rec is not None:
            return rec
        matches = [r for r in self.actors.values() if r.actor_id.startswith(key)] if len(key) >= 4 else []
        if not matches:
            matches = [r for r in self.actors.values() if r.name == key]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFound(f"no actor {key!r} (see `theater list`)")
        raise NotFound(f"{key!r} matches {len(matches)} actors; give more of the id")

    def descendants(self, rec: ActorRecord) -> list[ActorRecord]:
        """Children first in reverse start order, depth first: the order to stop them in."""
        out: list[ActorRecord] = []
        for cid in reversed(rec.children):
            child = self.actors.get(cid)
            if child is not None:
                out.extend(self.descendants(child))
                out.append(child)
        return out

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

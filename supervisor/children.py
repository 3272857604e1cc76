"""What an actor granted ``supervisor`` may ask the server about its own children.

Requests arrive on the control socket from the parent's worker: spawn, children,
stop_child, restart_child, child_state, child_events. An actor may act only on its own
children. A manifest given to ``spawn`` is a path relative to the parent's manifest
directory (read here, on the server's host), or TOML text; either way, the files it names
must be inside that directory (see ``_spawn``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from theater import manifest as manifests
from theater import protocol
from theater.errors import ManifestError, NotFound, Refused, TheaterError, from_wire
from theater.paths import read_regular, within

from .registry import ActorRecord, Status
from .services import Services

log = logging.getLogger("theater.server")

KINDS = ("spawn", "children", "stop_child", "restart_child", "child_state", "child_events")


@dataclass
class Ask:
    """One request from a parent's worker, and how to answer it."""

    services: Services
    parent: ActorRecord
    header: dict[str, Any]
    data: list[bytes]
    answered: bool = False

    def ok(self, *frames: bytes, **fields: Any) -> None:
        self.answered = True
        self.services.outbox.to_worker(self.parent.actor_id, protocol.ok(self.header["id"], **fields), *frames)

    def fail(self, exc: TheaterError) -> None:
        self.answered = True
        self.services.outbox.to_worker(self.parent.actor_id, protocol.error(self.header["id"], exc))

    def answer(self, header: dict[str, Any], frames: list[bytes], *fields: str) -> None:
        """Passes an answer from a worker or the chain on to the parent (``fields`` of it), errors
        as they were."""
        if header["k"] == "error":
            self.fail(from_wire(header["code"], header["error"]))
        else:
            self.ok(*frames, **{k: header.get(k) for k in fields})

    def child(self) -> ActorRecord:
        key = str(self.header.get("child", ""))
        rec = self.services.registry.get(key)
        if rec is None or rec.parent != self.parent.actor_id:
            raise NotFound(f"{key!r} is not a child of this actor")
        return rec


def handle(services: Services, parent: ActorRecord, header: dict[str, Any], data: list[bytes]) -> None:
    ask = Ask(services, parent, header, data)
    try:
        _HANDLERS[header["k"]](ask)
    except TheaterError as e:
        ask.fail(e)
    except Exception as e:      # a bug: logged, and the parent's call hears it rather than waits out its time
        log.exception("theater-server: internal error handling %s from %s", header["k"], parent.actor_id)
        ask.fail(TheaterError(f"internal error in the server: {type(e).__name__}: {e}"))


def _spawn(ask: Ask) -> None:
    """Every file a spawn names (the manifest, its component, its init_state) must be inside the
    parent's own manifest directory, and a regular file: an actor reads nothing else of the
    server's host through its children, and cannot make the server block in open() (issue 16)."""
    services, parent, header, data = ask.services, ask.parent, ask.header, ask.data
    root = parent.spec.base
    text, source, base = _read_manifest(parent, str(header.get("manifest", "")))
    m = manifests.parse(text, source)
    services.check_manifest(m)
    services.check_child(parent, m, base)
    services.room.check(parent)
    path = manifests.component_path(m, base, root=root)
    sha = services.child_component(m, path, root, f"{source}: component {m.component!r}")
    init = data[0] if header.get("has_init") and data else manifests.resolve_init_state(m, base, root=root)

    def ready(err: TheaterError | None) -> None:
        if err is not None:
            ask.fail(err)
        else:
            ask.ok(child=rec.actor_id)
    sup = services.supervision
    rec = sup.start(m, text, base, sha, init, parent=parent.actor_id, on_ready=ready)
    _unless_ready_in_time(ask, rec, lambda: sup.remove(rec))


def _unless_ready_in_time(ask: Ask, rec: ActorRecord, stopped: Callable[[], None]) -> None:
    """Stops a child not yet ready when its parent's call stops waiting (``within_ms``): the
    parent hears that it failed, so it must not come up behind the parent's back (each retry
    would add another), whether it is starting, a restart waits for its old incarnation to stop,
    or its supervisor restarts it after a failed init."""
    within = ask.header.get("within_ms")
    if within is None:
        return
    sup, registry = ask.services.supervision, ask.services.registry

    def too_late() -> None:
        if ask.answered or registry.get(rec.actor_id) is not rec or rec.status == Status.RUNNING:
            return          # ready in time (and it may have gone since), or already ended
        sup.stop(rec, "not ready before its parent's call stopped waiting", stopped, by_parent=True)
    ask.services.outbox.later(within / 1000, too_late)


def _read_manifest(parent: ActorRecord, given: str) -> tuple[str, str, str]:
    """(text, source for messages, base directory) of a manifest given as TOML or a path."""
    if "\n" in given or given.lstrip().startswith(("name", "[")):
        return given, f"manifest from {parent.name}", parent.spec.base
    try:
        path = within(parent.spec.base, given)
        text = read_regular(path, manifests.MAX_MANIFEST_FILE, root=parent.spec.base).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise ManifestError(f"manifest {given!r}: cannot read it: {reason}") from None
    return text, str(path), str(path.parent)


def _children(ask: Ask) -> None:
    ask.ok(children=ask.services.registry.live_children(ask.parent))


def _stop_child(ask: Ask) -> None:
    child, sup = ask.child(), ask.services.supervision

    def done() -> None:
        sup.remove(child)
        ask.ok()
    sup.stop(child, f"stopped by its parent {ask.parent.name}", done, by_parent=True)


def _restart_child(ask: Ask) -> None:
    child = ask.child()
    if not child.live:          # it ended: started again, it takes a place
        ask.services.room.check(ask.parent)

    def ready(err: TheaterError | None) -> None:
        if err is not None:
            ask.fail(err)
        else:
            ask.ok()
    ask.services.supervision.restart_now(child, f"restart asked by its parent {ask.parent.name}", ready)
    _unless_ready_in_time(ask, child, lambda: None)


def _child_state(ask: Ask) -> None:
    child = ask.child()
    _parked(ask, ask.services.ask_state(child.actor_id, child.status == Status.RUNNING,
                                        then=lambda h, frames: ask.answer(h, frames, "has_state")))


def _child_events(ask: Ask) -> None:
    _parked(ask, ask.services.outbox.ask_chain(
        {"k": "query", "what": "events", "actor": ask.child().actor_id, "since": ask.header.get("since") or 0},
        then=lambda h, frames: ask.answer(h, frames, "actor", "events", "more", "next")))


def _parked(ask: Ask, rid: str) -> None:
    """A parent waits for one child_state or child_events answer at a time (its call waits for
    it): one still parked when it asks again is one it gave up on, and is answered now. So a
    worker sending them without waiting (each would be parked up to PENDING_TIMEOUT, a child
    that does not answer) holds one place in ``pending``, not one per ask."""
    run = ask.parent.run
    earlier, run.child_query = run.child_query, rid
    ask.services.outbox.supersede(earlier, Refused("a later child_state or child_events of this actor took its place"))


_HANDLERS = {
    "spawn": _spawn, "children": _children, "stop_child": _stop_child, "restart_child": _restart_child,
    "child_state": _child_state, "child_events": _child_events,
}

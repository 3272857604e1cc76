"""``theater:simple/supervisor`` and the ``supervisor-handlers`` exports.

An actor manages its children through the server: each host function is a request on
the control socket, answered once done (``spawn`` after the child's init). The server
applies the parent's ``[restart]`` policy to its children and tells the parent what
happened to them: ``child_error``, ``child_exit`` or ``child_external_stop`` arrive in
the mailbox and call the matching export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from theater.errors import TheaterError
from theater.events import from_wire

from ..values import Ok, errors_as_err, record

if TYPE_CHECKING:
    from ..actor import Actor, Incoming
    from . import Host

HANDLERS = "theater:simple/supervisor-handlers"
EXPORTS = {"child_error": "handle-child-error", "child_exit": "handle-child-exit",
           "child_external_stop": "handle-child-external-stop"}
# Requests that change something outside this actor (the rest only read).
EFFECTS = {"spawn", "stop_child", "restart_child"}
# How the server's exit reasons map onto the WIT's error-type enum.
ERROR_TYPES = {"timeout": "operation-timeout", "hang": "operation-timeout"}


def register(host: Host) -> None:
    actor = host.actor

    def ask(kind: str, *frames: bytes, **fields: Any) -> tuple[dict[str, Any], list[bytes]]:
        if kind in EFFECTS:
            actor.wait_durable()    # a child started or stopped is an effect: after the events that led to it
        return actor.control_request({"k": kind, **fields}, *frames)

    def spawn(manifest: str, init: bytes | None) -> Ok:
        header, _ = ask("spawn", *([init] if init is not None else []), manifest=manifest, has_init=init is not None)
        return Ok(header["child"])

    def resume(manifest: str, state: bytes | None) -> Ok:
        header, _ = ask("spawn", *([state] if state is not None else []), manifest=manifest,
                        has_init=state is not None, resume=True)
        return Ok(header["child"])

    def list_children() -> list[str]:
        try:
            return list(ask("children")[0]["children"])
        except TheaterError:
            return []

    def stop_child(child: str) -> Ok:
        ask("stop_child", child=child)
        return Ok()

    def restart_child(child: str) -> Ok:
        ask("restart_child", child=child)
        return Ok()

    def get_child_state(child: str) -> Ok:
        header, frames = ask("child_state", child=child)
        return Ok(frames[0] if header.get("has_state") and frames else None)

    def get_child_events(child: str) -> Ok:
        header, frames = ask("child_events", child=child)
        events = [from_wire(header["actor"], m, d) for m, d in zip(header["events"], frames, strict=True)]
        return Ok([record(hash=e.hash, parent_hash=e.parent, event_type=e.type, data=e.data,
                          timestamp=e.time_ns // 1_000_000, description=None) for e in events])

    host.func("spawn", errors_as_err(spawn))
    host.func("resume", errors_as_err(resume))
    host.func("list-children", list_children)
    host.func("stop-child", errors_as_err(stop_child))
    host.func("restart-child", errors_as_err(restart_child))
    host.func("get-child-state", errors_as_err(get_child_state))
    host.func("get-child-events", errors_as_err(get_child_events))


def deliver(actor: Actor, item: Incoming) -> None:
    """Calls the parent's export for what happened to one of its children."""
    fn = EXPORTS[item.what]
    if not actor.exports(HANDLERS, fn):
        return                      # the parent chose not to hear about this
    h = item.header
    child = h["child"]
    if item.what == "child_error":
        detail = f"{h['reason']}: {h['error']}" if h.get("error") else h["reason"]
        error = record(error_type=ERROR_TYPES.get(h["reason"], "internal"), data=detail.encode())
        actor.call(HANDLERS, fn, (child, error))
    elif item.what == "child_exit":
        actor.call(HANDLERS, fn, (child, item.payload if h.get("has_data") else None))
    else:
        actor.call(HANDLERS, fn, (child,))

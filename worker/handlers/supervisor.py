"""``theater:simple/supervisor`` and the ``supervisor-handlers`` exports.

An actor manages its children through the server: each host function is a request on
the control socket, answered once done (``spawn`` after the child's init). The server
applies the parent's ``[restart]`` policy to its children and tells the parent what
happened to them: ``child_error``, ``child_exit`` or ``child_external_stop`` arrive in
the mailbox (never refused: the server sent them) and call the matching export.
"""

from __future__ import annotations

from typing import Any

from theater.errors import TheaterError, Timeout

from ..host import read_chain
from ..mailbox import Incoming
from ..values import Err, Ok, errors_as_err, record
from .base import Functions, Handler, register

INTERFACE = "theater:simple/supervisor"
EXPORTS = "theater:simple/supervisor-handlers"
CALLBACKS = {"child_error": "handle-child-error", "child_exit": "handle-child-exit",
             "child_external_stop": "handle-child-external-stop"}
# Requests that change something outside this actor (the rest only read).
EFFECTS = {"spawn", "stop_child", "restart_child"}
# A child not ready this long before the parent's call stops waiting is stopped by the server.
SPAWN_MARGIN = 0.5
# How the server's exit reasons map onto the WIT's error-type enum.
ERROR_TYPES = {"timeout": "operation-timeout", "hang": "operation-timeout"}


@register
class Supervisor(Handler):
    type = "supervisor"
    kinds = dict.fromkeys(CALLBACKS, False)

    def functions(self) -> Functions:
        ask = self._ask

        def spawn(manifest: str, init: bytes | None, resume: bool = False) -> Ok:
            header, _ = ask("spawn", *([init] if init is not None else []), manifest=manifest,
                            has_init=init is not None, resume=resume, within_ms=self._within_ms())
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
            ask("restart_child", child=child, within_ms=self._within_ms())
            return Ok()

        def get_child_state(child: str) -> Ok | Err:
            header, frames = ask("child_state", child=child)
            state = frames[0] if header.get("has_state") and frames else None
            if state is not None and (why := self.host.over_limit(state)):
                return Err(f"the child's state was refused: {why}")
            return Ok(state)

        def get_child_events(child: str) -> Ok | Err:
            room = self.host.manifest.limits.max_message
            events, whole = read_chain(lambda since: ask("child_events", child=child, since=since), room)
            if not whole:
                return Err(f"the chain of {child} is larger than this actor's message limit ({room} bytes); "
                           f"{len(events)} events fit")
            return Ok([record(hash=e.hash, parent_hash=e.parent, event_type=e.type, data=e.data,
                              timestamp=e.time_ns // 1_000_000, description=None) for e in events])

        return {INTERFACE: {
            "spawn": errors_as_err(spawn), "resume": errors_as_err(lambda m, s: spawn(m, s, resume=True)),
            "list-children": list_children,
            "stop-child": errors_as_err(stop_child), "restart-child": errors_as_err(restart_child),
            "get-child-state": errors_as_err(get_child_state), "get-child-events": errors_as_err(get_child_events),
        }}

    def _within_ms(self) -> int | None:
        """How long the server may take over a child's start before it stops it and says so: a
        little less than this call waits, so the parent hears whether its child runs (a child it
        had given up on ran on, and each retry added another). With no time left for that, the
        start is not asked for (a restart would only stop a running child)."""
        left = self.host.call_time_left()
        if left is None:
            return None
        if left <= SPAWN_MARGIN:
            raise Timeout(f"too little of this call's time is left to wait for a child's start ({left:.2f}s)")
        return int((left - SPAWN_MARGIN) * 1000)

    def _ask(self, kind: str, *frames: bytes, **fields: Any) -> tuple[dict[str, Any], list[bytes]]:
        if kind in EFFECTS:
            self.host.before_effect()   # a child started or stopped is an effect: after the events that led to it
        return self.host.ask_server({"k": kind, **fields}, *frames)

    def deliver(self, item: Incoming) -> None:
        """Calls the parent's export for what happened to one of its children."""
        fn = CALLBACKS[item.what]
        host = self.host
        if not host.exports(EXPORTS, fn):
            return                      # the parent chose not to hear about this
        h = item.header
        child = h["child"]
        if item.what == "child_error":
            detail = f"{h['reason']}: {h['error']}" if h.get("error") else h["reason"]
            error = record(error_type=ERROR_TYPES.get(h["reason"], "internal"), data=detail.encode())
            host.call(EXPORTS, fn, (child, error))
        elif item.what == "child_exit":
            host.call(EXPORTS, fn, (child, item.payload if h.get("has_data") else None))
        else:
            host.call(EXPORTS, fn, (child,))

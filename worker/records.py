"""The data of the events an actor's calls produce, built in one place.

The live actor and the replayer both build their events here, so a replay reproduces the
recorded bytes exactly, or shows where the actor now does something else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from theater.events import Event
from theater.manifest import Limits

from .values import record, to_data

# Each event's keys are in canonical CBOR order (shorter first, then bytewise), as its data is
# encoded: theater.events.encode_data then takes the fast way.

def held_limits(limits: Limits) -> dict[str, int]:
    """The limits a ``lifecycle/start`` records: those a replay holds the incarnation to (fuel
    is deterministic: a call that used up its fuel live uses it up again)."""
    return {"fuel": limits.fuel, "memory": limits.memory, "process_memory": limits.process_memory}


def out_of_fuel(fuel: int) -> str:
    """What a call that used up its ``fuel`` ends with (its error event's, live and replayed)."""
    return f"call used up its fuel ({fuel})"


def fuel_ran_out(e: BaseException) -> bool:
    """Whether wasmtime stopped a call for its fuel."""
    return "all fuel consumed" in str(e)


def call_event(function: str, params: tuple[Any, ...]) -> dict[str, Any]:
    return {"event": "call", "params": to_data(params), "function": function}


def result_event(function: str, returns: tuple[Any, ...], old_state: bytes | None,
                 new_state: bytes | None) -> tuple[dict[str, Any], bool]:
    """The result event, and whether the state changed (then the event carries it)."""
    event: dict[str, Any] = {"event": "result"}
    changed = new_state != old_state
    if changed:
        event["state"] = new_state
    event["result"] = to_data(returns)
    event["function"] = function
    return event, changed


def error_event(function: str, reason: str, message: str) -> dict[str, Any]:
    return {"error": message, "event": "error", "reason": reason, "function": function}


def host_event(args: tuple[Any, ...], output: Any) -> dict[str, Any]:
    """A host call: what went in and what came out (``output`` already as event data)."""
    return {"input": to_data(args), "output": output}


def chain_value(events: Sequence[Event]) -> dict[str, Any]:
    """What ``get-chain`` hands the actor: each event's type, data and short hashes."""
    metas = []
    for ev in events:
        parent = int.from_bytes(ev.parent[:8], "big") if ev.parent else None
        metas.append(record(hash=int.from_bytes(ev.hash[:8], "big"),
                            event=record(event_type=ev.type, parent=parent, data=ev.data)))
    return record(events=metas)


def trap_message(e: BaseException) -> str:
    """wasmtime's message starts with a generic line; the cause is its last line (``wasm trap: ...``)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    cause = next((ln for ln in reversed(lines) if "wasm trap:" in ln), lines[-1] if lines else type(e).__name__)
    return cause.split("wasm trap:", 1)[-1].strip() if "wasm trap:" in cause else cause


def split_result(payload: tuple[Any, ...]) -> tuple[bytes | None, tuple[Any, ...]]:
    """An export's ok value: (new state,) or (new state, (returns...))."""
    return payload[0], (tuple(payload[1]) if len(payload) > 1 else ())

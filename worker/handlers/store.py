"""``theater:simple/store``: the content store, kept by the gateway process (``supervisor/gateway/store.py``).

Each call goes to the gateway and its answer comes back as the call's result; the worker
never touches ``$THEATER_HOME/store`` (it could not corrupt content if it tried: the
gateway hashes what it stores). Every call is recorded with its result (``get`` with the
bytes it read), so a replay needs no store. A write over a quota is refused by the grant:
``Err``, and a ``store/permission-denied`` event with what was asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..values import Err, Ok, errors_as_err
from .base import Functions, Handler, register

INTERFACE = "theater:simple/store"
DENIED = "store/permission-denied"
# Calls that change the store: the events that led to them leave for the chain first.
WRITES = frozenset({"new", "store", "label", "remove-label", "remove-from-label", "store-at-label",
                    "replace-content-at-label", "replace-at-label"})


def _ref(value: str | None) -> dict[str, str] | None:
    return None if value is None else {"hash": value}


# WIT function -> how the gateway's answer becomes the WIT value
_RESULTS: dict[str, Callable[[Any], Any]] = {
    "store": _ref, "store-at-label": _ref, "replace-content-at-label": _ref, "get-by-label": _ref,
    "list-all-content": lambda refs: [{"hash": h} for h in refs],
}


@register
class Store(Handler):
    type = "store"

    def functions(self) -> Functions:
        host = self.host

        def call(op: str) -> Callable[..., Ok | Err]:
            def run(*params: Any) -> Ok | Err:
                # strings and content refs travel as strings; content (list<u8>) as a frame
                content = next((p for p in params if isinstance(p, bytes)), None)
                strings = [p["hash"] if isinstance(p, dict) else p for p in params if not isinstance(p, bytes)]
                if op in WRITES:
                    host.before_effect()
                reply, frames = host.ask_gateway({"k": "store_call", "op": op, "args": strings},
                                                 *([content] if content is not None else []))
                if "denied" in reply:
                    host.record(DENIED, {"function": op, "store": strings[0] if strings else None,
                                         "reason": reply["denied"]})
                    return Err(f"permission denied: {reply['denied']}")
                if "err" in reply:
                    return Err(reply["err"])
                value = frames[0] if reply.get("has_body") and frames else reply.get("value")
                return Ok(_RESULTS.get(op, lambda v: v)(value))
            return errors_as_err(run)
        ops = ("new", "store", "get", "exists", "label", "get-by-label", "remove-label", "remove-from-label",
               "store-at-label", "replace-content-at-label", "replace-at-label", "list-labels",
               "list-all-content", "calculate-total-size")
        return {INTERFACE: {op: call(op) for op in ops}}

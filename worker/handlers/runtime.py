"""``theater:simple/runtime``: log, get-chain, shutdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from theater.events import Event

from ..records import chain_value
from ..values import Ok, Recorded
from .base import Functions, Handler, register

INTERFACE = "theater:simple/runtime"


@register
class Runtime(Handler):
    type = "runtime"

    def functions(self) -> Functions:
        host = self.host

        def log(msg: str) -> None:
            host.log.debug("[%s] %s", host.name, msg)      # it is in the chain; not the server's log

        def get_chain() -> Recorded:
            # recorded by length and head: a replay rebuilds the value from the record itself
            events = host.own_events()
            head = events[-1].hash.hex() if events else None
            return Recorded(chain_value(events), {"length": len(events), "head": head})

        def shutdown(data: bytes | None) -> Ok:
            host.shutdown(data)
            return Ok()
        return {INTERFACE: {"log": log, "get-chain": get_chain, "shutdown": shutdown}}

    @staticmethod
    def replayed(function: str, output: Any, history: Sequence[Event]) -> Any:
        if function == "get-chain":
            return chain_value(history[: output["length"]])
        return output

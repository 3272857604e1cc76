"""``theater:simple/runtime``: log, get-chain, shutdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..records import chain_value
from ..values import Ok, Recorded

if TYPE_CHECKING:
    from . import Host


def register(host: Host) -> None:
    actor = host.actor
    def log(msg: str) -> None:
        actor.log.debug("[%s] %s", actor.name, msg)      # it is in the chain; not the server's log

    def get_chain() -> Recorded:
        events = actor.own_events()
        head = events[-1].hash.hex() if events else None
        return Recorded(chain_value(events), {"length": len(events), "head": head})

    def shutdown(data: bytes | None) -> Ok:
        actor.request_shutdown(data)
        return Ok()

    host.func("log", log)
    host.func("get-chain", get_chain)
    host.func("shutdown", shutdown)

"""``theater:simple/runtime``: log, get-chain, shutdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..values import Ok, Recorded, record

if TYPE_CHECKING:
    from . import Host


def register(host: Host) -> None:
    actor = host.actor
    def log(msg: str) -> None:
        actor.log.debug("[%s] %s", actor.name, msg)      # it is in the chain; not the server's log

    def get_chain() -> Recorded:
        events = actor.own_events()
        metas = []
        for ev in events:
            parent = int.from_bytes(ev.parent[:8], "big") if ev.parent else None
            metas.append(record(hash=int.from_bytes(ev.hash[:8], "big"),
                                event=record(event_type=ev.type, parent=parent, data=ev.data)))
        head = events[-1].hash.hex() if events else None
        return Recorded(record(events=metas), {"length": len(events), "head": head})

    def shutdown(data: bytes | None) -> Ok:
        actor.request_shutdown(data)
        return Ok()

    host.func("log", log)
    host.func("get-chain", get_chain)
    host.func("shutdown", shutdown)

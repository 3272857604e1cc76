"""Which actor a control message comes from: decided by the sender's pid, as the kernel says.

A worker's control connection is attributed to an actor by its ``hello``, and only if the
process that sent it (``theater.peercred``: SO_PEERCRED, which a peer cannot choose) is the
one the fork server reported spawning for that actor, and says so itself. From then on
every message on that connection must still come from that pid. Nothing a peer chooses
(its routing id, the pid it claims) attributes a message: a process of the workers' user
that connects to ``run/control.sock`` can neither speak for an actor nor, since no routing
id can be taken over (no ROUTER_HANDOVER; workers pick unguessable ids), receive one's
messages.

The fork server's ``spawned`` report and the worker's hello race (the worker starts while
the fork server reports it); a hello that arrives first waits here for the report. The gate
watches the registry for each incarnation's pid: it then lets a waiting hello in, and tells
the chain process which pid is each actor's worker (``bind``/``unbind``), so the chain takes
each actor's events only from its own worker, and no faster than the actor's limits allow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq

from theater import peercred, protocol
from theater._logging import Sparse
from theater.errors import ProtocolError

from .registry import ActorRecord, Registry, Status

log = logging.getLogger("theater.server")

# Refusals are logged at most this often (with a count of those not logged).
LOG_EVERY = 1.0
# Hellos waiting for their spawn report, per actor (a rogue's claims must not crowd out the worker's).
EARLY_MAX = 8

Message = tuple[ActorRecord, dict[str, Any], list[bytes]]
Deliver = Callable[[ActorRecord, dict[str, Any], list[bytes]], None]


class Gate:
    def __init__(self, registry: Registry, tell_chain: Callable[[dict[str, Any]], None],
                 to_worker: Callable[[str, dict[str, Any]], object]) -> None:
        self.registry = registry
        self.tell_chain = tell_chain
        self.to_worker = to_worker                  # (actor id, header): the outbox's
        self.deliver: Deliver | None = None       # where a hello let in late goes (the server's inbox)
        registry.pid_watchers.append(self._pid_changed)
        self.early: dict[str, list[tuple[bytes, int, dict[str, Any], list[bytes]]]] = {}
        self._log = Sparse(log, LOG_EVERY)

    def admit(self, frames: list[zmq.Frame]) -> Message | None:
        """The actor a control message is from, with its header and data; None if it is refused
        (logged) or waits for its actor's spawn report. A malformed request from an actor's worker
        is answered with why, if its id can be read: its call does not wait out its time limit."""
        pid = peercred.pid(frames[0])
        ident, body = frames[0].bytes, [f.bytes for f in frames[1:]]
        registry = self.registry
        rec = registry.by_ident.get(ident)
        if rec is not None and rec.pid != pid:
            self.refused(pid, f"it uses actor {rec.actor_id}'s connection, whose worker is pid {rec.pid}")
            return None
        try:
            header, data = protocol.decode(body)
        except ProtocolError as e:
            self.refused(pid, f"malformed message: {e}")
            if rec is not None and (rid := protocol.request_id(body)):
                self.to_worker(rec.actor_id, protocol.error(rid, e))
            return None
        if rec is not None:
            if header["k"] == "hello":      # its pid was checked once: a second could name any process
                self.refused(pid, f"a second hello for actor {rec.actor_id} on its worker's connection")
                return None
            return rec, header, data
        if header["k"] != "hello":
            self.refused(pid, f"{header['k']} before any hello")
            return None
        rec = registry.get(header["actor"])
        if rec is None or rec.run.ident is not None or rec.status not in (Status.STARTING, Status.RESTARTING):
            self.refused(pid, f"hello for actor {header['actor']}, which is not waiting for a worker")
            return None
        if pid is None or header["pid"] != pid:
            self.refused(pid, f"hello for actor {rec.actor_id} claims pid {header['pid']}")
            return None
        if rec.pid is None:                 # its spawn report is not here yet
            waiting = self.early.setdefault(rec.actor_id, [])
            if len(waiting) < EARLY_MAX:
                waiting.append((ident, pid, header, data))
            return None
        if rec.pid != pid:
            self.refused(pid, f"hello for actor {rec.actor_id}, whose worker is pid {rec.pid}")
            return None
        registry.bind(rec, ident)
        return rec, header, data

    def _pid_changed(self, rec: ActorRecord, old: int | None, new: int | None) -> None:
        """A new worker pid (the fork server's report): the chain hears of it, and a hello that
        came first is let in. No pid (it exited): nothing more is taken from it, here or by the
        chain."""
        if new is None:
            self.early.pop(rec.actor_id, None)
            self.tell_chain({"k": "unbind", "actor": rec.actor_id})
            return
        self.tell_chain(_bind(rec, new))
        found = None
        for ident, pid, header, data in self.early.pop(rec.actor_id, []):
            if pid == new and found is None and rec.run.ident is None:
                self.registry.bind(rec, ident)
                found = (rec, header, data)
            else:
                self.refused(pid, f"hello for actor {rec.actor_id}, whose worker is pid {new}")
        if found is not None and self.deliver is not None:
            self.deliver(*found)

    def rebind_all(self) -> None:
        """A new chain process knows no worker: tell it every live one."""
        for rec in self.registry:
            if rec.pid is not None:
                self.tell_chain(_bind(rec, rec.pid))

    def refused(self, pid: int | None, why: str) -> None:
        """One log line a second at most, counting the rest."""
        self._log.warning(None, f"control message from pid {pid} refused: {why}")


def _bind(rec: ActorRecord, pid: int) -> dict[str, Any]:
    """The chain's ``bind``: with the event rates it holds the worker to (chain.rates)."""
    return {"k": "bind", "actor": rec.actor_id, "pid": pid, "events_per_second": rec.spec.limits.events_per_second,
            "event_bytes_per_second": rec.spec.limits.event_bytes_per_second}

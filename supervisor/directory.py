"""Where each running actor listens, and who asked, so they can be told when it moves.

Workers resolve a peer once (``resolve``) and then talk to it directly, each message
carrying the ticket the answer gave (``theater.tickets``). When the peer stops or restarts,
everyone who resolved it gets ``peer`` and resolves again on their next message: the new
incarnation listens at a new address, with a new key. A resolve for an actor that
is starting or restarting, or whose worker has just exited (what comes next waits for the
exit's record in the chain), is answered when it is ready, or when it will not come back.

A worker that accepted a channel from an actor it never resolved asks to be told too
(``watch_peer``), naming the opener's incarnation (from its ``chan_open``): if that incarnation
has already ended, the notice goes at once, so a watch that comes late misses nothing. A
``peer`` notice names the incarnation that ended, and answers and watches are for the current
one only: every watch ends with it.

Others may listen too (``listeners``): each is told ``("up", rec)`` when an incarnation is
ready, ``("down", rec)`` when its process has ended (``rec.last_exit`` says how) and
``("gone", rec)`` when the actor will not come back. The metrics count spawns, exits and
restarts this way. Management clients may watch the same comings and goings (``watch``):
each is pushed ``actors_changed {sub, actor, status}`` when an actor is ready or is gone for
good (``theater mcp`` lists actors' tools again then; one that is restarting keeps them). A
watcher that has gone away is forgotten at the next push.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq

from theater import protocol, tickets
from theater.errors import NotFound, Refused, TheaterError, UsageError

from .outbox import Outbox
from .registry import ActorRecord, Registry, Status

log = logging.getLogger("theater.server")


class Directory:
    def __init__(self, registry: Registry, outbox: Outbox) -> None:
        self.registry = registry
        self.outbox = outbox
        self.watchers: dict[str, set[str]] = {}                  # actor -> who to tell when its incarnation ends
        # actor -> {asker: request id}: a worker waits on one resolve at a time, so one each (its
        # latest; an earlier one it gave up on), however many it sends (a flood grew this unbounded)
        self.waiting: dict[str, dict[str, str]] = {}
        self.listeners: list[Callable[[str, ActorRecord], None]] = [self._push_to_watchers]
        self.observers: dict[str, bytes] = {}                    # watch subscription -> client

    def watch(self, client: bytes) -> str:
        sub = self.outbox.new_id()
        self.observers[sub] = client
        return sub

    def unwatch(self, sub: str) -> None:
        self.observers.pop(sub, None)

    def clients(self) -> set[bytes]:
        return set(self.observers.values())

    def drop(self, client: bytes) -> None:
        """Ends every watch of ``client`` (its access was revoked, or it is gone)."""
        for sub in [s for s, c in self.observers.items() if c == client]:
            del self.observers[sub]

    def _push_to_watchers(self, what: str, rec: ActorRecord) -> None:
        if what == "down":
            return                       # a restart: its tools stay listed
        for sub, client in list(self.observers.items()):
            try:
                self.outbox.send_client(client, {"k": "actors_changed", "sub": sub, "actor": rec.actor_id,
                                                 "status": str(rec.status)})
            except zmq.Again:
                pass                     # not reading: it lists again on its next nudge or check
            except zmq.ZMQError:
                del self.observers[sub]  # gone

    def resolve(self, asker: ActorRecord, header: dict[str, Any]) -> None:
        rid = header["id"]
        try:
            rec = self.registry.lookup(header["actor"], see=None)
        except (NotFound, UsageError) as e:
            self.outbox.to_worker(asker.actor_id, protocol.error(rid, e))
            return
        if rec.status == Status.RUNNING and rec.run.endpoint:
            self._answer(rec, asker.actor_id, rid)
        elif rec.status in (Status.STARTING, Status.RESTARTING, Status.RUNNING):
            # running with no endpoint: its worker just exited, and what comes next (a restart,
            # or not) waits for the exit's record in the chain; either answers the asker
            waiting = self.waiting.setdefault(rec.actor_id, {})
            if (earlier := waiting.get(asker.actor_id)) is not None:
                self.outbox.to_worker(asker.actor_id, protocol.error(earlier, Refused(
                    f"a later resolve of actor {rec.actor_id} took this one's place")))
            waiting[asker.actor_id] = rid
        else:
            self.outbox.to_worker(asker.actor_id, protocol.error(rid, Refused(f"actor {rec.actor_id} is {rec.status}")))

    def _answer(self, rec: ActorRecord, asker: str, rid: str) -> None:
        """Where ``rec`` listens, and the asker's ticket to it (its key is made at its hello,
        with its endpoint)."""
        assert rec.run.inbox_key is not None
        self.watchers.setdefault(rec.actor_id, set()).add(asker)
        self.outbox.to_worker(asker, protocol.ok(rid, actor=rec.actor_id, endpoint=rec.run.endpoint,
                                                 ticket=tickets.ticket(rec.run.inbox_key, asker),
                                                 incarnation=rec.run.number))

    def follow(self, asker: ActorRecord, header: dict[str, Any]) -> None:
        """``asker`` is told when that incarnation of the actor ends: now, if it has (or the actor
        is unknown), since ``down`` has then told its watchers already."""
        actor, number = header["actor"], header["incarnation"]
        rec = self.registry.get(actor)
        if rec is not None and rec.alive and rec.run.number == number:
            self.watchers.setdefault(actor, set()).add(asker.actor_id)
        else:
            self.outbox.to_worker(asker.actor_id, {"k": "peer", "actor": actor, "incarnation": number})

    def up(self, rec: ActorRecord) -> None:
        for asker, rid in self.waiting.pop(rec.actor_id, {}).items():
            self._answer(rec, asker, rid)
        self._tell("up", rec)

    def down(self, rec: ActorRecord) -> None:
        for watcher in self.watchers.pop(rec.actor_id, ()):
            self.outbox.to_worker(watcher, {"k": "peer", "actor": rec.actor_id, "incarnation": rec.run.number})
        self._tell("down", rec)

    def _tell(self, what: str, rec: ActorRecord) -> None:
        """Listeners are observers: a bug in one is logged, and supervision goes on."""
        for listener in self.listeners:
            try:
                listener(what, rec)
            except Exception:
                log.exception("a listener of the directory failed on %s %s", what, rec.actor_id)

    def gone(self, rec: ActorRecord, why: TheaterError) -> None:
        """The actor will not come back: answer everyone still waiting for it."""
        for asker, rid in self.waiting.pop(rec.actor_id, {}).items():
            self.outbox.to_worker(asker, protocol.error(rid, why))
        self.watchers.pop(rec.actor_id, None)
        self._tell("gone", rec)

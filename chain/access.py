"""Who may say what to the chain process, by the kernel's word on each sender.

Every message on ``run/chain.sock`` carries its sender's pid (``theater.peercred``: taken
by the kernel at connect, not chosen by the peer). The server, the chain's parent, tells
the chain which process is each actor's current worker (``bind {actor, pid}`` when it learns
the pid of a new incarnation from the fork server, ``unbind {actor}`` when it has exited).
Then:

* the server may record, query, bind, unbind and shut down (and append for an actor it
  bound to its own pid: the tests' stand-in for a worker);
* an actor's bound worker may ``append`` (on its event stream only, where the chain paces it:
  chain.rates) and ``resume`` for that actor, and query that actor's own events (its
  ``get-chain``); nothing about any other actor;
* anyone else may do nothing: refused, and logged (one line a second at most).

A worker asks for its resume while the server is still telling the chain its pid, so a
``resume`` or ``append`` from a pid not bound yet waits for its bind (up to ``PARK_FOR``,
at most ``PARK_MAX`` messages in all) before it is refused.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("theater.chain")

# How long a worker's message may wait for the server's bind of its pid. The server binds as
# soon as the fork server reports the pid, a few ms after the spawn; a chain restart makes
# every worker resend while the server re-binds them all.
PARK_FOR = 5.0
# Messages waiting for a bind, in all: bounds what unbound senders can make the chain hold.
PARK_MAX = 4096
# Refusals are logged at most this often (with a count of those not logged).
LOG_EVERY = 1.0

SERVER_ONLY = frozenset({"record", "bind", "unbind", "shutdown"})
WORKER = frozenset({"append", "resume"})


@dataclass
class Parked:
    cred: tuple[int, int, int]
    peer: bytes
    frames: list[bytes]
    until: float


class Access:
    def __init__(self, server_pid: int | None) -> None:
        # run by hand (no --parent), the chain takes the server's part from its own user
        self.server_pid = server_pid
        self.own_uid = os.getuid()
        self.actor_of: dict[int, str] = {}      # pid -> the actor it is the current worker of
        self.pid_of: dict[str, int] = {}        # actor -> its current worker's pid
        self.parked: list[Parked] = []
        self._logged_at = 0.0
        self._unlogged = 0

    def is_server(self, cred: tuple[int, int, int] | None) -> bool:
        if cred is None:
            return False
        if self.server_pid is None:
            return cred[0] == self.own_uid
        return cred[2] == self.server_pid

    def bind(self, actor_id: str, pid: int) -> list[Parked]:
        """``pid`` is now ``actor_id``'s worker (its previous one, if any, no longer is);
        returns the messages that waited for this bind, in arrival order."""
        self.unbind(actor_id)
        other = self.actor_of.pop(pid, None)      # a pid is one actor's worker at a time
        if other is not None:
            self.pid_of.pop(other, None)
        self.pid_of[actor_id] = pid
        self.actor_of[pid] = actor_id
        woken = [p for p in self.parked if p.cred[2] == pid]
        if woken:
            self.parked = [p for p in self.parked if p.cred[2] != pid]
        return woken

    def unbind(self, actor_id: str) -> None:
        pid = self.pid_of.pop(actor_id, None)
        if pid is not None:
            self.actor_of.pop(pid, None)

    def check(self, cred: tuple[int, int, int] | None, header: dict[str, Any], stream: bool) -> str | None:
        """None if the sender may send this message (on an event ``stream``, or the ROUTER), else
        why not. ``"park"``: a worker message from a pid the server has not bound (yet)."""
        kind = header["k"]
        server = self.is_server(cred)
        if kind in SERVER_ONLY:
            return None if server else f"only the server may send {kind}"
        if kind == "append" and not stream and not server:
            return "a worker's events go on its event stream (run/chain-stream.sock)"
        pid = cred[2] if cred is not None else None
        bound = self.actor_of.get(pid) if pid is not None else None
        if kind in WORKER:
            if bound is None:
                return "park" if pid is not None and not server else "no actor is bound to this process"
            if header["actor"] != bound:
                return f"process {pid} is the worker of actor {bound}, not of {header['actor']}"
            return None
        if server:
            return None
        if kind == "query" and bound is not None:
            if header.get("what") == "events" and header.get("actor") == bound:
                return None
            return f"a worker may query only its own actor's events ({bound})"
        return "not the server, nor an actor's worker"

    def park(self, cred: tuple[int, int, int], peer: bytes, frames: list[bytes]) -> bool:
        """Keeps a worker's message until its pid is bound; False if too many wait already."""
        if len(self.parked) >= PARK_MAX:
            return False
        self.parked.append(Parked(cred, peer, frames, time.monotonic() + PARK_FOR))
        return True

    def expired(self, now: float) -> list[Parked]:
        """Parked messages whose bind never came: to be refused."""
        if not self.parked or self.parked[0].until > now:
            return []
        gone = [p for p in self.parked if p.until <= now]
        self.parked = [p for p in self.parked if p.until > now]
        return gone

    def next_expiry(self) -> float | None:
        return self.parked[0].until if self.parked else None

    def refused(self, cred: tuple[int, int, int] | None, kind: str, why: str) -> None:
        """Logs a refusal: one line a second at most, counting the rest."""
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more refused since)" if self._unlogged else ""
        who = f"uid {cred[0]} pid {cred[2]}" if cred is not None else "a non-ipc peer"
        log.warning("chain: refused %s from %s: %s%s", kind, who, why, more)
        self._logged_at, self._unlogged = now, 0

"""A spare: a child of the fork server (``worker.zygote``) that gets ready, waits for an actor, and
becomes it.

While it waits, a spare does what does not depend on its actor: it joins a cgroup of its own,
rehearses an actor's start (``worker.rehearsal``), and connects its ZeroMQ sockets. Sandboxed,
it may connect them only once confined (Landlock binds only the threads started after it, and
libzmq starts two with its first socket), and its confinement depends on its actor's view. Most
actors have the same one, the *usual* view (no filesystem grant: ``theater.sandbox.view`` is
empty), and the same user and descriptor limit: a spare the fork server forks *ahead* for that
confinement puts it all up while it waits (``Sandbox.enter``, its sockets, ``Sandbox.seal``), and
is handed only an actor whose confinement is exactly that (``ahead_for``). Any other actor gets a
spare that confines itself once it knows its actor. Only the data rlimit, per actor and lowered
only, is put on after the assignment, before any actor code exists.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

import orjson
import setproctitle
import zmq

from theater import _linux
from theater.paths import Home

from . import actor, rehearsal
from .loop import Sockets
from .preload import Preloaded
from .sandbox import Sandbox, SandboxError, lower_data

log = logging.getLogger("theater.zygote")


# What a spare confined ahead knows of its actor's confinement, and the one part it applies once
# assigned: a confinement with anything else is never matched to one.
AHEAD_KEYS = frozenset({"user", "nofile", "view"})
AFTER_KEYS = frozenset({"data_limit"})


def ahead_for(confine: dict[str, Any]) -> dict[str, Any] | None:
    """The confinement a spare may put up ahead for an actor confined by ``confine``, which it
    must equal to be given that actor (``None``: the actor's view is not the usual one, or it
    asks for something a spare confined ahead would not do)."""
    if any((confine.get("view") or {}).values()) or set(confine) - AHEAD_KEYS - AFTER_KEYS:
        return None
    return {"user": confine.get("user"), "nofile": confine.get("nofile", 1024)}


def confine(spec: dict) -> None:
    """What an unsandboxed worker does to itself before any actor code runs, in this order: lower
    its data rlimit (when there is no cgroup), harden (no core dumps, bounded descriptors, umask
    077, no new privileges), then drop to the server's --user. Its cgroup it joined as a spare;
    the server sets that group's limits before it answers the hello. Each step is documented
    in docs/isolation.md with what it does not give."""
    lower_data(spec)
    _linux.harden(spec.get("nofile", 1024))
    if spec.get("user"):
        _linux.become(*spec["user"])


def share_inbox(inbox: Path, user: list[int] | None) -> None:
    """Under --user, peers run as the workers' user: they may connect to the inbox socket (its
    group's), which stays the server user's, in a directory they cannot write."""
    if user:
        os.chown(inbox, -1, user[1])
        os.chmod(inbox, 0o660)


def run(home: Home, channel: socket.socket, zygote: int, cgroups: list[str], box: Sandbox | None,
        preload: Preloaded, stage: rehearsal.Stage | None, ahead: dict[str, Any] | None) -> int:
    """Gets ready (rehearses on ``stage``; confines itself for ``ahead`` when given, sandboxed only),
    waits for an actor, becomes it; the process exit status."""
    _linux.die_with_parent(signal.SIGTERM, parent=zygote)
    _linux.adopt_orphans()          # what a granted program leaves running stays within reach (commands)
    if cgroups and not _linux.join_new_cgroups(cgroups, f"w-{os.getpid()}"):
        log.warning("worker %d: could not make or join its cgroup; it will run without its limits", os.getpid())
    _linux.close_fds_except(channel.fileno(), *preload.fds())
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    inbox_fd, inbox = Sockets.listen(home), home.worker_socket(os.getpid())
    ctx = zmq.Context()
    # unsandboxed, a spare connects its sockets while it waits; sandboxed, only once confined
    sockets = Sockets.open(ctx, home, inbox_fd) if box is None else None
    if stage is not None:
        rehearsal.rehearse(stage)
    if box is not None and ahead is not None:
        try:        # the listener goes to the fork server now: it watches a spare like a worker
            share_inbox(inbox, ahead.get("user"))
            box.enter(home, ahead)
            sockets = Sockets.open(ctx, home, inbox_fd)
            box.seal(channel, ahead)
        except (SandboxError, OSError) as e:
            if _let_go(channel):
                return 0        # the fork server no longer wants it (it retired it while it got ready)
            log.error("spare %d: cannot confine itself ahead: %s", os.getpid(), e)
            return actor.EXIT_START_FAILED
    data = channel.recv(1 << 16)
    if not data:
        return 0            # the zygote went away before giving us work (or retired us)
    job = orjson.loads(data)
    actor_id, name, spec = job["actor"], job["name"], job.get("confine") or {}
    fuel = bool(job.get("fuel"))
    loaded = preload.take(job["component"], fuel)
    setproctitle.setproctitle(f"python -m worker --actor {actor_id} --name {name} --home {home.root}")
    if ahead is None:       # confined ahead, it shared its inbox then
        share_inbox(inbox, spec.get("user"))
    if box is None:
        channel.close()
        last = lambda: confine(spec)            # noqa: E731 - as its first act once its requests are out
    elif ahead is not None:
        channel.close()
        last = lambda: lower_data(spec)         # noqa: E731 - confined already, but for this
    else:
        try:
            box.enter(home, spec)
        except (SandboxError, OSError) as e:
            log.error("worker %d (actor %s): cannot confine itself: %s", os.getpid(), actor_id, e)
            return actor.EXIT_START_FAILED

        def last() -> None:     # before any actor code is loaded
            box.seal(channel, spec)
            channel.close()
    if sockets is None:
        sockets = Sockets.open(ctx, home, inbox_fd)
    try:
        return actor.main(ctx, home, sockets, actor_id, name, job["component"], fuel, last, preload.engine(fuel),
                          loaded)
    finally:
        # last words to the server are worth a moment, unless it is gone (we are orphaned)
        ctx.destroy(linger=1000 if os.getppid() == zygote else 0)


def _let_go(channel: socket.socket) -> bool:
    """Has the fork server closed its end of our channel?"""
    try:
        return channel.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True

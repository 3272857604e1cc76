"""How many actors may be live at once. Each actor is an OS process: unbounded, one supervising
actor's tree (100 children each with 100 children ...) would take the host's memory and pids.

Bounds on live actors (``ActorRecord.live``): an actor's children (its ``[limits]
children``), the actors anywhere beneath it (``[limits] descendants``: a spawn counts against
every ancestor of the new child, so a child's room is at most what each of them has left), and
the server's (``[root] max_actors``, ``--max-actors``); and a tree's depth (MAX_DEPTH, fixed: the
supervision tree is shown as nested JSON, which ends at 255 levels, two a generation). A start,
a spawn, or a restart of an actor that had ended, past one of them is ``Refused`` with one line
naming the bound and where it is set; an actor already live never is (its supervisor's restarts
find their place), nor one a server brings back at its start (admitted before: none is lost to a
lower bound).
"""

from __future__ import annotations

from theater.config import ServerConfig
from theater.errors import Refused

from .registry import ActorRecord, Registry

# Generations in one tree, its top-level actor the first. Supervision trees are a few levels deep
# (OTP's rarely pass ten); this one is deep enough for any design and shallow enough to show.
MAX_DEPTH = 64


def check(registry: Registry, config: ServerConfig, parent: ActorRecord | None) -> None:
    """Refused if one more live actor under ``parent`` (None: a top-level one) would pass a bound."""
    if parent is not None:
        if len(kids := registry.live_children(parent)) >= (most := parent.spec.limits.children):
            raise Refused(f"this actor has {len(kids)} children, as many as its [limits] children ({most}) allows")
        line = registry.line(parent)
        if len(line) >= MAX_DEPTH:
            raise Refused(f"this actor is {len(line)} generations deep in its tree, the most a tree may have "
                          f"({MAX_DEPTH}): a child of it would be one more")
        for rec, n in reversed(list(zip(line, registry.live_beneath(line), strict=True))):   # the nearest first
            if n >= (most := rec.spec.limits.descendants):
                who = "this actor" if rec is parent else f"its ancestor {rec.name} ({rec.actor_id})"
                raise Refused(f"{who} has {n} live descendants, as many as its [limits] descendants "
                              f"({most}) allows")
    if (n := sum(r.live for r in registry)) >= (most := config.max_actors):
        raise Refused(f"the server has {n} live actors, as many as it allows ({most}); raise the bound "
                      f"with theater-server --max-actors N, or [root] max_actors in {config.source}")

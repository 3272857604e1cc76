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
lower bound). Refusals are counted by bound (``theater_actors_refused_total``) and logged, one line
a bound every LOG_EVERY at most: an actor spawning in a loop past its bound must not fill the journal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from theater._logging import Sparse
from theater.config import ServerConfig
from theater.errors import Refused

from .registry import ActorRecord, Registry

log = logging.getLogger("theater.server")

# Generations in one tree, its top-level actor the first. Supervision trees are a few levels deep
# (OTP's rarely pass ten); this one is deep enough for any design and shallow enough to show.
MAX_DEPTH = 64
# The bounds, as refusals are counted by (the metrics' label).
BOUNDS = ("children", "depth", "descendants", "max_actors")
# A bound's refusals after the one logged are counted, and said with the next line, this long after.
LOG_EVERY = 60.0


class Room:
    """The bounds, checked against the registry as it is now; what they refused, counted."""

    def __init__(self, registry: Registry, config: ServerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry, self.config = registry, config
        self.refused: dict[str, int] = {}               # bound -> refusals since the server started
        self._log = Sparse(log, LOG_EVERY, clock)

    def check(self, parent: ActorRecord | None) -> None:
        """Refused if one more live actor under ``parent`` (None: a top-level one) would pass a bound."""
        found = _passed(self.registry, self.config, parent)
        if found is None:
            return
        bound, why = found
        self.refused[bound] = self.refused.get(bound, 0) + 1
        where = f"under {parent.name} ({parent.actor_id})" if parent is not None else "at the top level"
        self._log.warning(bound, f"theater-server: refused a new actor {where}: {why}")
        raise Refused(why)


def _passed(registry: Registry, config: ServerConfig, parent: ActorRecord | None) -> tuple[str, str] | None:
    """The bound one more live actor under ``parent`` would pass, and the line saying so; or None."""
    if parent is not None:
        if len(kids := registry.live_children(parent)) >= (most := parent.spec.limits.children):
            return "children", f"this actor has {len(kids)} children, as many as its [limits] children ({most}) allows"
        line = registry.line(parent)
        if len(line) >= MAX_DEPTH:
            return "depth", (f"this actor is {len(line)} generations deep in its tree, the most a tree may have "
                             f"({MAX_DEPTH}): a child of it would be one more")
        for rec, n in reversed(list(zip(line, registry.live_beneath(line), strict=True))):   # the nearest first
            if n >= (most := rec.spec.limits.descendants):
                who = "this actor" if rec is parent else f"its ancestor {rec.name} ({rec.actor_id})"
                return "descendants", (f"{who} has {n} live descendants, as many as its [limits] descendants "
                                       f"({most}) allows")
    if (n := sum(r.live for r in registry)) >= (most := config.max_actors):
        return "max_actors", (f"the server has {n} live actors, as many as it allows ({most}); raise the bound "
                              f"with theater-server --max-actors N, or [root] max_actors in {config.source}")
    return None

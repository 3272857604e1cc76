"""Engines and components the fork server made ready, so that its children start with them.

A worker used to make its engine (~1 ms) and deserialize its component (~7 ms for the 35 MB
compiled form of a componentize-py actor) during its spawn. The fork server makes the engines
once, and deserializes each component it was asked to spawn lately, between spawns; spares
forked after that inherit it mapped and ready (shared pages, not the actor's), and a spawn of
that component skips the deserialize. A spare forked before it loads the component itself.
A loaded component keeps its compiled file open (wasmtime maps its memory image from it): a
spare keeps those descriptors, and once it knows its actor, drops every other component.

wasmtime deadlocks a child that compiles after its parent did (its compile thread pool);
deserializing is not compiling, and no actor is compiled in the fork server or its children
(the rehearsal's is, on one thread: ``worker.rehearsal``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections import OrderedDict
from pathlib import Path

import wasmtime
from wasmtime import component as wc

from theater.errors import TheaterError
from theater.paths import Home

from . import component
from .component import Shape

log = logging.getLogger("theater.zygote")

# Components kept loaded: the least recently spawned is dropped first. Each costs the fork
# server the compiled form's mapped pages (shared with the page cache) and its metadata.
KEPT = 8


class Preloaded:
    def __init__(self, home: Home, kept: int = KEPT) -> None:
        self.home = home
        self.kept = kept
        self.engines: dict[bool, wasmtime.Engine] = {}
        # (sha, fuel) -> (component, shape, the descriptors it holds)
        self.components: OrderedDict[tuple[str, bool], tuple[wc.Component, Shape, set[int]]] = OrderedDict()
        self.wanted: list[tuple[str, bool]] = []

    def engine(self, fuel: bool) -> wasmtime.Engine:
        """The engine for components compiled with (or without) fuel, made once."""
        if fuel not in self.engines:
            self.engines[fuel] = component.make_engine(fuel)
        return self.engines[fuel]

    def fds(self) -> set[int]:
        """The descriptors the loaded components hold (a spare must not close them)."""
        return {fd for _c, _s, fds in self.components.values() for fd in fds}

    def take(self, sha: str, fuel: bool) -> tuple[wc.Component, Shape] | None:
        """In a worker: its component, if it is loaded. Every other is dropped (its pages and
        descriptors are no business of this actor's)."""
        mine = self.components.pop((sha, fuel), None)
        self.components.clear()
        return None if mine is None else (mine[0], mine[1])

    def want(self, sha: str, fuel: bool) -> None:
        """A spawn of this component: have it loaded for the next spares."""
        key = (sha, fuel)
        if key in self.components:
            self.components.move_to_end(key)
        elif key not in self.wanted:
            self.wanted.append(key)

    def load_wanted(self) -> None:
        """Loads what was wanted (in the fork server, before it forks spares). A component that
        does not load is left to its workers, which report why."""
        for sha, fuel in self.wanted:
            cwasm = self.home.compiled(sha, fuel)
            try:
                comp, shape = component.load_compiled(self.engine(fuel), cwasm, self.home.shape(sha))
            except TheaterError as e:
                log.debug("zygote: component %s not preloaded: %s", sha[:12], e.message)
                continue
            self.components[(sha, fuel)] = (comp, shape, _holding(cwasm))
            if len(self.components) > self.kept:
                self.components.popitem(last=False)
        if self.wanted:
            self.wanted.clear()
            gc.freeze()      # as at start-up: the collector must not write to the pages children share


def _holding(path: Path) -> set[int]:
    """This process's descriptors open on ``path``."""
    target, fds = str(path.resolve()), set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):      # the listing's own descriptor, closed by now
            if os.readlink(f"/proc/self/fd/{name}") == target:
                fds.add(int(name))
    return fds

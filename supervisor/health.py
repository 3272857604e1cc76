"""What the server tells the outside about itself while it runs, from timers on its loop.

systemd (``sdnotify``, for a ``Type=notify`` unit):
  READY=1     once the chain process has answered (``Server.open`` waits for it), the worker
              fork server has answered a ping, and every actor a previous server left running
              has been restored (ready, or failed); until then ``EXTEND_TIMEOUT_USEC`` every
              ``EXTEND_EVERY`` keeps a long restore inside the start timeout.
  STATUS=     the actors by status, when that changes, at most once per ``TICK``.
  WATCHDOG=1  every half of ``$WATCHDOG_USEC``, sent by a timer of the loop itself: a loop
              stuck in one handler sends none, and systemd restarts the server.
  STOPPING=1  on SIGTERM; while actors are still being stopped in order, the stop timeout
              is extended the same way.
The metrics (``metrics``) get a fresh snapshot every ``TICK``. ``run/server.json`` says where
this server listens (``--listen``, ``--metrics`` and ``--console`` with the ports actually bound).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable

import orjson

from theater.paths import Home, write_atomically

from .metrics import Metrics
from .outbox import Outbox
from .registry import Registry, Status
from .sdnotify import Notifier

log = logging.getLogger("theater.server")

# Status and metrics are refreshed this often once the server is ready (more often before,
# so that READY follows the last restored actor closely).
TICK = 1.0
STARTING_TICK = 0.1
# While restoring or stopping: every EXTEND_EVERY, the timeout is moved EXTEND_BY from now.
EXTEND_EVERY = 5.0
EXTEND_BY = 30.0

_STARTING = (Status.STARTING, Status.RESTARTING)


def describe(registry: Registry) -> str:
    """"3 actors: 2 running, 1 failed" (the STATUS line)."""
    counts: dict[str, int] = {}
    for rec in registry:
        counts[str(rec.status)] = counts.get(str(rec.status), 0) + 1
    if not counts:
        return "no actors"
    total = sum(counts.values())
    return f"{total} actor{'s' if total != 1 else ''}: " + ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


class Health:
    def __init__(self, home: Home, registry: Registry, outbox: Outbox, notifier: Notifier,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.home = home
        self.registry = registry
        self.outbox = outbox
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock
        self.ready = False
        self.forkserver_up = False
        self.restoring: set[str] = set()
        self.stopping = False
        self.last_status = ""
        self.next_extend = 0.0
        self.metrics_url: str | None = None         # where the exporter listens, if it does
        self.console_url: str | None = None         # where the web console listens, if it does

    def opened(self, listen: str) -> None:
        """The chain has answered and the sockets are bound; saved actors are starting."""
        write_atomically(self.home.run / "server.json", orjson.dumps(
            {"pid": os.getpid(), "listen": listen, "metrics": self.metrics_url, "console": self.console_url}))
        self.restoring = {r.actor_id for r in self.registry if r.status in _STARTING}
        if self.restoring:
            self._extend(f"restoring {len(self.restoring)} actors")
        if self.notifier.watchdog_every:
            self.outbox.later(self.notifier.watchdog_every, self._ping)
        self._tick()

    def forkserver_answered(self) -> None:
        self.forkserver_up = True
        self._check_ready()

    def stop(self) -> None:
        """SIGTERM: the actors are being stopped."""
        self.stopping = True
        self.notifier.stopping(f"stopping: {describe(self.registry)}")
        self.next_extend = self.clock() + EXTEND_EVERY

    def closed(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.home.run / "server.json").unlink()
        self.notifier.close()

    # ---- timers ----------------------------------------------------------------------------------

    def _tick(self) -> None:
        self.outbox.later(TICK if self.ready else STARTING_TICK, self._tick)     # first: a bug below still ticks
        self._check_ready()
        if self.metrics is not None:
            self.metrics.refresh()
        alive = sum(1 for r in self.registry if r.alive)
        if (self.restoring or (self.stopping and alive)) and self.clock() >= self.next_extend:
            what = f"restoring: {len(self.restoring)} actors still starting" if self.restoring else \
                f"stopping: {alive} actors still running"
            self._extend(what)
        elif self.ready and not self.stopping:
            status = describe(self.registry)
            if status != self.last_status:
                self.last_status = status
                self.notifier.status(status)

    def _ping(self) -> None:
        every = self.notifier.watchdog_every
        assert every is not None
        self.outbox.later(every, self._ping)
        self.notifier.watchdog()

    def _extend(self, status: str) -> None:
        self.notifier.extend(EXTEND_BY, status)
        self.next_extend = self.clock() + EXTEND_EVERY

    def _check_ready(self) -> None:
        if self.ready or not self.forkserver_up:
            return
        self.restoring = {a for a in self.restoring
                          if (r := self.registry.get(a)) is not None and r.status in _STARTING}
        if self.restoring:
            return
        self.ready = True
        self.last_status = describe(self.registry)
        self.notifier.ready(self.last_status)
        log.info("theater-server ready (%s)", self.last_status)

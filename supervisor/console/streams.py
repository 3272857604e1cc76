"""What the hub keeps for live pages: one ``Stream`` per page, one ``Follow`` per actor followed."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import orjson

# The latest events of an actor passed on to its pages each time (the rest are counted).
LIVE_BATCH = 50
# Notices queued for one page before it starts losing them, and how many live pages at once.
STREAM_QUEUE = 256
MAX_STREAMS = 32


class Stream:
    """One live page: the notices the hub has for it (``name``, JSON), in order."""

    def __init__(self, actor: str | None) -> None:
        self.actor = actor
        self.queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(STREAM_QUEUE)
        self.lost = 0
        # set once the hub knows where the followed actor's chain ends:
        # the page is told it is live only then, so nothing stored after that is missed
        self.ready = threading.Event()

    def put(self, name: str, payload: bytes) -> None:
        """(hub thread) Queues a notice; a full queue counts it as lost, and says so once it has room."""
        try:
            if self.lost:
                self.queue.put_nowait(("missed", orjson.dumps({"count": self.lost})))
                self.lost = 0
            self.queue.put_nowait((name, payload))
        except queue.Full:
            self.lost += 1

    def end(self) -> None:
        """(hub thread) The console is closing: the page's connection ends next."""
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.queue.put_nowait(None)
        self.ready.set()


@dataclass
class Follow:
    """One actor some pages follow: where its chain's unseen events begin."""

    pages: int = 0
    waiting: list[Stream] = field(default_factory=list)      # pages not ready until ``next`` is known
    next: int | None = None                                  # the first sequence number not passed on
    asking: bool = False                                     # a read of its tail is on its way

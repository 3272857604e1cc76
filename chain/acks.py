"""What the chain owes workers: the acknowledgements of the events it stored for them.

An acknowledgement names the last event stored for one (worker, actor). It goes at once to a
worker that waits on it (``sync``: an effect of the worker's waits), otherwise lazily: once
``ACK_EVERY`` events wait for one, or ``ACK_DELAY`` after their commit. What is owed is kept
oldest first (an entry keeps its place as it grows), so what is due is found without a walk
over every actor at each turn of the loop, and a turn can come with each worker's write.
"""

from __future__ import annotations

# Lazy acknowledgements: at most this long after the commit, or this many events behind.
ACK_DELAY = 0.05
ACK_EVERY = 1_000

Key = tuple[bytes, str]         # (the worker's peer id, the actor)


class Acks:
    def __init__(self) -> None:
        self.staged: dict[Key, tuple[int, int]] = {}            # in the group being staged: (head seq, events)
        self.waited: set[Key] = set()                           # those asking for an acknowledgement now
        self.owed: dict[Key, tuple[int, int, float]] = {}       # stored: (head seq, events, since), oldest first
        self.full: set[Key] = set()                             # of those, ACK_EVERY events behind

    def stage(self, key: Key, seq: int, n: int) -> None:
        """``n`` events of ``key`` staged, its head now ``seq``: owed once the group is stored."""
        self.staged[key] = (seq, self.staged.get(key, (0, 0))[1] + n)

    def stored(self, now: float) -> None:
        """The staged group is durable: its events are owed an acknowledgement."""
        for key, (seq, n) in self.staged.items():
            _, count, since = self.owed.get(key, (0, 0, now))
            self.owed[key] = (seq, count + n, since)
            if count + n >= ACK_EVERY:
                self.full.add(key)
        self.staged.clear()

    def refused(self) -> list[Key]:
        """The staged group was not stored: whose events it held (they are told why)."""
        keys = list(self.staged)
        self.staged.clear()
        self.waited.difference_update(keys)
        return keys

    def next_due(self) -> float | None:
        """When the oldest lazy acknowledgement is due, if any is owed."""
        return next(iter(self.owed.values()))[2] + ACK_DELAY if self.owed else None

    def due(self, now: float, everything: bool = False) -> list[tuple[Key, int]]:
        """Takes the acknowledgements to send now, each with its seq: the oldest up to the first
        not due, and those waited on or ACK_EVERY behind (``everything``: all that are owed)."""
        owed = self.owed
        if everything:
            keys = list(owed)
        else:
            keys = []
            for key, (_, _, since) in owed.items():
                if now - since < ACK_DELAY:
                    break
                keys.append(key)
            keys += [key for key in (*self.waited, *self.full) if key in owed]
        self.waited.clear()
        self.full.clear()
        return [(key, owed.pop(key)[0]) for key in dict.fromkeys(keys)]

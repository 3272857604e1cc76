"""What a replay found (``worker/replay.py``): its report, and the divergence or limit it stopped at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Diverged(Exception):
    def __init__(self, seq: int, why: str) -> None:
        super().__init__(f"event {seq}: {why}")
        self.seq = seq
        self.why = why


class AtLimit(Exception):
    """Raised where the replay cannot go on for a limit: (seq, which limit, what it says)."""


@dataclass
class Report:
    actor: str
    events: int
    calls: int
    incarnations: int
    reproduced: int = 0                 # events the replay made again and found alike (not the host's records)
    # each interrupted call the replay could not reproduce: (its seq, why); its incarnation's
    # replay ended there
    cut: list[tuple[int, str]] = field(default_factory=list)
    divergence: Diverged | None = None
    limit: tuple[int, str, str] | None = None     # where the replay stopped at a limit: (seq, which, why)

    @property
    def ok(self) -> bool:
        return self.divergence is None and self.limit is None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"actor": self.actor, "ok": self.ok, "events": self.events,
                               "reproduced": self.reproduced, "calls": self.calls, "incarnations": self.incarnations}
        if self.cut:
            out.update(not_reproducible_from=self.cut[0][0], not_reproducible_why=self.cut[0][1],
                       not_reproducible=[{"seq": seq, "why": why} for seq, why in self.cut])
        if self.divergence is not None:
            out.update(seq=self.divergence.seq, error=self.divergence.why)
        if self.limit is not None:
            out.update(seq=self.limit[0], limit=self.limit[1], error=self.limit[2])
        return out

"""What a replay found (``worker/replay.py``): its report, the divergence or limit it stopped at, and
the recorded data it reads, which is a divergence where it is not what its event holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from theater.bodies import body_of
from theater.events import Event, decode_data


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


def recorded(ev: Event, *needs: str) -> dict[str, Any]:
    """A recorded event's data: a map, holding ``needs``. A worker wrote it, and one whose actor
    code escaped may have written anything that hashes (it failed the replayer with an exception):
    anything else is where the record cannot be replayed, said as a divergence there."""
    try:
        body = decode_data(ev.data)
    except Exception:           # cbor2's errors are no ValueError since cbor2 6
        body = body_of(ev.data)
    if not isinstance(body, dict) or any(k not in body for k in needs):
        raise Diverged(ev.seq, f"the record's {ev.type} event holds {short(body)}, not what such an event "
                               f"holds (a map{', with ' + ', '.join(needs) if needs else ''})")
    return body


def short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

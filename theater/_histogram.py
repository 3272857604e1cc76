"""A histogram in Prometheus's shape (a count per upper bound, a sum), kept by the process that
observes and copied out whole to whoever reports it: the server's metrics, the chain's stats."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any


class Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)       # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1       # a bucket holds values <= its bound
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def copy(self) -> Histogram:
        h = Histogram(self.bounds)
        h.counts, h.sum = list(self.counts), self.sum
        return h

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, values at or below it) for each bound, then ("+Inf", all)."""
        out, total = [], 0
        for bound, n in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def to_wire(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum}

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> Histogram:
        h = cls(tuple(float(b) for b in value["bounds"]))
        counts = [int(n) for n in value["counts"]]
        if len(counts) != len(h.counts):
            raise ValueError("a histogram needs one count per bound, and one above them")
        h.counts, h.sum = counts, float(value["sum"])
        return h

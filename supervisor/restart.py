"""The restart decision, as pure functions of data (Erlang/OTP ``supervisor`` semantics).

Nothing here reads a clock, sleeps, or touches a process: the server's loop carries
out the plans. ``now`` is monotonic seconds; OTP counts whole seconds, we keep fractions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from theater.manifest import Backoff, Restart

from .registry import ExitKind


class Action(StrEnum):
    """What follows an exit."""

    STOPPED = "stopped"            # someone asked it to stop: done
    START_FAILED = "start_failed"  # its first start failed: the starter hears why
    EXITED = "exited"              # not to be restarted (its restart type, or the server is stopping)
    RESTART = "restart"            # by the plan of its supervisor's strategy
    GIVE_UP = "give_up"            # a top-level actor over its budget: left failed
    ESCALATE = "escalate"          # a child over its parent's budget: the parent fails


@dataclass(frozen=True)
class Flags:
    """A supervisor's own settings (OTP's sup_flags): how it restarts its children."""

    strategy: str = "one_for_one"
    intensity: int = 3
    period: float = 5.0

    @classmethod
    def of(cls, r: Restart) -> Flags:
        return cls(r.strategy, r.intensity, r.period)


def should_restart(restart_type: str, exit_kind: ExitKind) -> bool:
    """permanent: always; transient: only after an abnormal exit; temporary: never."""
    if restart_type == "permanent":
        return True
    if restart_type == "transient":
        return exit_kind == ExitKind.ABNORMAL
    return False


@dataclass(frozen=True)
class Plan:
    stop: tuple[str, ...]        # running siblings to stop, in this order (reverse start order)
    start: tuple[str, ...]       # children to start again, in this order (start order)
    drop: tuple[str, ...]        # children stopped by the plan and not restarted (temporary)


def plan(strategy: str, children: list[str], failed: str, types: dict[str, str]) -> Plan:
    """What to do when ``failed`` (to be restarted) ended, given its siblings in start order."""
    if strategy == "one_for_one":
        affected = [failed]
    elif strategy == "one_for_all":
        affected = list(children)
    elif strategy == "rest_for_one":
        affected = children[children.index(failed):] if failed in children else [failed]
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    others = [c for c in affected if c != failed]
    stop = tuple(reversed(others))
    drop = tuple(c for c in others if types.get(c) == "temporary")
    start = tuple(c for c in affected if c == failed or types.get(c) != "temporary")
    return Plan(stop, start, drop)


def add_restart(history: list[float], now: float, period: float, intensity: int) -> tuple[list[float], bool]:
    """Records a restart; True when more than ``intensity`` fall within ``period`` (escalate).
    As OTP: a restart exactly ``period`` old still counts (kept while ``t >= now - period``)."""
    kept = [t for t in history if t >= now - period]
    kept.append(now)
    return kept, len(kept) > intensity


# Restarts without a [restart] backoff: the first at once, then this curve, starting over once an
# incarnation ran for a second. An actor that keeps failing (say, in init) does not spin; an actor
# that crashes now and then still comes back in milliseconds.
DEFAULT_BACKOFF = Backoff(min=0.1, max=1.0, jitter=0.2)


def next_backoff(configured: Backoff | None, attempt: int, ran: float,
                 rng: random.Random | None = None) -> tuple[float, int]:
    """The delay before a restart and the attempt count after it. ``attempt`` counts restarts in
    a row; it starts over once the incarnation that ended had run (from ready to exit) for
    longer than the curve's maximum. Without a configured curve the first restart is at once."""
    curve = configured or DEFAULT_BACKOFF
    if ran > curve.max:
        attempt = 0
    if configured is None:
        delay = 0.0 if attempt == 0 else backoff_delay(attempt - 1, curve.min, curve.max, curve.jitter, rng)
    else:
        delay = backoff_delay(attempt, curve.min, curve.max, curve.jitter, rng)
    return delay, attempt + 1


def backoff_delay(attempt: int, low: float, high: float, jitter: float, rng: random.Random | None = None) -> float:
    """Delay before restart number ``attempt`` (0 = first): low * 2**attempt capped at high,
    then up to ``jitter`` (a fraction) more at random, as Akka does, so that restarts do not
    march in step, at the cap too (the delay may exceed ``high`` by that fraction)."""
    base = min(high, low * (2 ** min(attempt, 62)))
    return base + (rng or random).random() * jitter * base if jitter else base

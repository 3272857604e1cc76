"""Component values in the shapes ``worker.codec`` gives and takes, and as events record them.

Records are dicts keyed by WIT field name (hyphens included); a WIT ``result`` is
``("ok", value)`` or ``("err", message)``; host handlers return ``Ok``/``Err``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from theater.errors import TheaterError


@dataclass(frozen=True, slots=True)
class Ok:
    value: Any = None


@dataclass(frozen=True, slots=True)
class Err:
    message: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """A host function's return value, with the shorter form its event records."""

    value: Any
    data: Any


def record(**fields: Any) -> dict[str, Any]:
    """A WIT record from keyword fields; ``event_type`` becomes the field ``event-type``."""
    return {name.replace("_", "-"): value for name, value in fields.items()}


_PLAIN = (bytes, str, int, bool, type(None))


def to_data(value: Any) -> Any:
    """A value as event data: results become {"ok": v} / {"err": e}, tuples lists."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value):
        return list(value)           # the common case: a call's flat parameters
    if isinstance(value, Ok):
        return {"ok": to_data(value.value)}
    if isinstance(value, Err):
        return {"err": value.message}
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    return value


def lower(value: Any) -> Any:
    """What a host handler returned, in the codec's shape (Ok/Err become result tuples)."""
    if isinstance(value, Ok):
        return ("ok", value.value)
    if isinstance(value, Err):
        return ("err", value.message)
    return value


def errors_as_err(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For host functions returning a WIT result: what the host refuses (TheaterError) is the
    actor's ``Err`` to handle, not a trap."""
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except TheaterError as e:
            return Err(e.message)
    return call

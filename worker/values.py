"""Component values as wasmtime-py gives and takes them, and as events record them.

wasmtime-py returns a ``result<T, string>`` untagged when T is not a string (the ok payload,
or the error ``str``) and as a ``Variant`` when it is; records are ``Record`` objects with
attributes named exactly like the WIT fields (hyphens included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wasmtime.component import Record, Variant


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


def record(**fields: Any) -> Record:
    """A Record from keyword fields; ``event_type`` becomes the WIT field ``event-type``."""
    r = Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def field(r: Record, name: str) -> Any:
    return getattr(r, name)


def to_data(value: Any) -> Any:
    """A value as event data: records become maps, results {"ok": v} / {"err": e}."""
    if isinstance(value, Ok):
        return {"ok": to_data(value.value)}
    if isinstance(value, Err):
        return {"err": value.message}
    if isinstance(value, Variant):
        return {value.tag: to_data(value.payload)}
    if isinstance(value, Record):
        return {k: to_data(v) for k, v in vars(value).items()}
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    return value


def lower_result(value: Ok | Err, ok_is_string: bool) -> Any:
    """An Ok/Err as wasmtime-py expects a host function's ``result<_, string>`` return."""
    if ok_is_string:
        return Variant("ok", value.value) if isinstance(value, Ok) else Variant("err", value.message)
    return value.value if isinstance(value, Ok) else value.message

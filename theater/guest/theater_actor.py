"""Helpers for Theater actors written in Python (imported by the actor, inside the component).

This module runs in the guest, not in the host: ``theater build`` puts its folder on
componentize-py's Python path (``theater build --dry-run`` prints the command), so an actor
imports it as ``theater_actor``. It needs only the standard library and componentize-py's
own ``componentize_py_types``.

Every export of a ``theater:simple`` actor takes the state the host keeps for it (bytes, or
None) and returns the new state first. ``json_state`` lets an export see and return that
state as a JSON value instead, and turns any exception into an ``Err`` with its message
(an ``Err`` fails the actor with that reason, recorded in its chain; an uncaught exception
would trap with none). ``Err`` is re-exported from here.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from typing import Any

from componentize_py_types import Err

__all__ = ["Err", "dump", "json_state", "load", "text"]


def load(state: bytes | None, default: Any = None) -> Any:
    """The state as a JSON value (a copy of ``default`` when the actor has none yet)."""
    if state is None:
        return copy.deepcopy(default)
    try:
        return json.loads(state)
    except ValueError as e:
        raise Err(f"the actor's state is not JSON: {e}") from None


def dump(value: Any) -> bytes | None:
    """A JSON value as state bytes (None stays None: the actor keeps no state)."""
    return None if value is None else json.dumps(value, separators=(",", ":")).encode()


def text(data: bytes) -> str:
    """A message as text; ``Err`` if it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Err(f"expected a UTF-8 message: {e}") from None


def json_state(fn: Callable[..., Any] | None = None, *, default: Any = None) -> Any:
    """Decorates an export ``(self, state, params) -> (state, ...)`` so that ``state`` is a JSON
    value going in and coming out (``default``, or ``{}``, when the actor has none yet);
    everything else is as the WIT says. Usable as ``@json_state`` or ``@json_state(default=...)``."""
    start = {} if default is None else default

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def export(self: Any, state: bytes | None, params: tuple[Any, ...]) -> tuple[Any, ...]:
            try:
                out = f(self, load(state, start), params)
            except Err:
                raise
            except Exception as e:       # fail with a reason, not an anonymous trap
                raise Err(f"{f.__qualname__}: {type(e).__name__}: {e}") from None
            return (dump(out[0]), *out[1:])
        return export
    return wrap(fn) if fn is not None else wrap

"""The worker's half of the test-only ``probe`` handler: runs the code an actor passes it.

``result = ...`` in the code is what comes back (its ``repr``); an exception comes back as
``ExceptionType: message`` (errno included), so a test can tell which layer refused.

Replayed, it runs the same code again, in the replayer, and hands the actor what that makes of
it: a replay reproduces the record only where the replayer's sandbox refuses what the
worker's did (tests/test_sandbox.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from theater.events import Event, decode_data
from worker.handlers.base import Functions, Handler, register

_replayed = itertools.count()       # the calls replayed so far (one replayer, one chain)


@register
class Probe(Handler):
    type = "probe"

    def functions(self) -> Functions:
        return {"test:probe/probe": {"run": _run}}

    @staticmethod
    def replayed(function: str, output: Any, history: Sequence[Event]) -> Any:
        runs = [e for e in history if e.type == "test:probe/probe/run"]
        (code,) = decode_data(runs[next(_replayed)].data)["input"]
        return _run(code)


def _run(code: bytes) -> bytes:
    scope: dict[str, object] = {"__name__": "probe"}
    try:
        exec(compile(code.decode(), "<probe>", "exec"), scope)
    except Exception as e:
        return f"{type(e).__name__}: {e}".encode()
    return repr(scope.get("result")).encode()

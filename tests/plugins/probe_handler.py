"""The worker's half of the test-only ``probe`` handler: runs the code an actor passes it.

``result = ...`` in the code is what comes back (its ``repr``); an exception comes back as
``ExceptionType: message`` (errno included), so a test can tell which layer refused.
"""

from __future__ import annotations

from worker.handlers.base import Functions, Handler, register


@register
class Probe(Handler):
    type = "probe"

    def functions(self) -> Functions:
        return {"test:probe/probe": {"run": _run}}


def _run(code: bytes) -> bytes:
    scope: dict[str, object] = {"__name__": "probe"}
    try:
        exec(compile(code.decode(), "<probe>", "exec"), scope)
    except Exception as e:
        return f"{type(e).__name__}: {e}".encode()
    return repr(scope.get("result")).encode()

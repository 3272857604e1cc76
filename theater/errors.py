"""Theater's exceptions, one tree for all processes.

    TheaterError                 base; carries a stable ``code`` that crosses the wire
    ├── UsageError               bad command-line input (exit 2)
    ├── ManifestError            a manifest that does not validate; names file, key and what is allowed
    ├── ComponentError           a component that is not wasm, does not compile, or imports what is not granted
    ├── ProtocolError            a frame that does not decode, an unknown kind, a missing field, an oversized message
    ├── NotFound                 an unknown actor, channel or request id
    │   └── NoSuchComponent      a start named a component by digest that the server does not store
    ├── Refused                  the target exists but will not take this now (not running, mailbox full, throttled)
    ├── ActorFailed              the actor trapped, returned ``Err`` or hit a limit while doing what was asked
    │   └── Failure              ... inside its worker, with the reason classified (trap, error, timeout, fuel, ...)
    ├── Rejected                 the chain refused an event that does not extend its actor's head (gap, conflict)
    ├── Timeout                  no answer in time (the peer may still be alive)
    ├── Unreachable              no server at the given home or address (client side only)
    └── VerifyError              a chain that does not verify; carries the first bad sequence number

A stop the user asked for is not an error. Codes map to CLI exit statuses in
``theater.cli._output`` and nowhere else.
"""

from __future__ import annotations


class TheaterError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "error": self.message}


class UsageError(TheaterError):
    code = "usage"


class ManifestError(TheaterError):
    code = "manifest"


class ComponentError(TheaterError):
    code = "component"


class ProtocolError(TheaterError):
    code = "protocol"


class NotFound(TheaterError):
    code = "not_found"


class NoSuchComponent(NotFound):
    """The client sends the component's bytes instead (see ``Client.start``)."""

    code = "no_component"


class Refused(TheaterError):
    code = "refused"


class ActorFailed(TheaterError):
    code = "actor_failed"


class Failure(ActorFailed):
    """The actor failed during a call, as its worker saw it; ``reason`` classifies it (trap, error,
    timeout, fuel, memory, host, stopped), and the server's exit classification keeps it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Rejected(TheaterError):
    """An event the chain will not store: ``kind`` is "gap" (something before it is missing:
    send again from ``head``) or "conflict" (it contradicts the stored chain: fatal)."""

    code = "rejected"

    def __init__(self, kind: str, message: str, head: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.head = head


class Timeout(TheaterError):
    code = "timeout"


class Unreachable(TheaterError):
    code = "unreachable"


class VerifyError(TheaterError):
    code = "verify"

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


_BY_CODE: dict[str, type[TheaterError]] = {
    cls.code: cls
    for cls in (
        TheaterError, UsageError, ManifestError, ComponentError, ProtocolError, NotFound,
        NoSuchComponent, Refused, ActorFailed, Timeout, Unreachable, VerifyError,
    )
}


def from_wire(code: str, message: str) -> TheaterError:
    """Rebuilds the exception a peer reported, so callers can catch it by class."""
    return _BY_CODE.get(code, TheaterError)(message)

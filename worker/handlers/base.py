"""The plug-in interface of host handlers: what one declares, and what it gets to work with.

A handler is a class registered under its manifest type (``@register``). It declares:
  type       the ``[[handler]] type`` it implements; the manifest's half (the interfaces it
             grants, its config keys) is ``theater.grants.SPECS[type]``;
  functions  the host functions of each interface it grants (``functions()``);
  kinds      the mailbox kinds it handles, and whether each counts against the mailbox limit;
  deliver    how such an item runs the actor's exports (the exports come from the grant spec);
  notices    the server's notices it takes at once, not through the mailbox (``notices()``:
             what a running call may be waiting for, such as a channel's credit);
  recording  a function returns its value, or ``Recorded(value, data)`` when the event should
             record a shorter form; ``replayed`` turns a recorded output back into the value
             handed to wasm when the call is replayed (default: the recorded output itself).
It is built once per actor with a ``Host`` (the actor's parts it may use) and its config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from theater.events import Event

from ..host import Host
from ..mailbox import Incoming

Functions = Mapping[str, Mapping[str, Callable[..., Any]]]    # interface -> function name -> impl


class Handler:
    type: ClassVar[str]
    kinds: ClassVar[Mapping[str, bool]] = {}       # mailbox kind -> counted against the mailbox limit

    def __init__(self, host: Host, config: Mapping[str, Any]) -> None:
        self.host = host
        self.config = config

    def functions(self) -> Functions:
        return {}

    def notices(self) -> Mapping[str, Callable[[dict[str, Any]], None]]:
        """The server's notices this handler takes as they arrive: kind -> what to do with its header."""
        return {}

    def deliver(self, item: Incoming) -> None:
        raise NotImplementedError(f"handler {self.type} declares kind {item.what!r} but does not deliver it")

    def close(self, reason: str) -> None:
        """The actor is ending: answer whoever still waits on this handler."""

    @staticmethod
    def replayed(function: str, output: Any, history: Sequence[Event]) -> Any:
        """The value a replayed call of ``function`` hands to wasm, from its recorded output
        (already in the codec's shape) and the events recorded before it."""
        return output


REGISTRY: dict[str, type[Handler]] = {}


def register(cls: type[Handler]) -> type[Handler]:
    REGISTRY[cls.type] = cls
    return cls

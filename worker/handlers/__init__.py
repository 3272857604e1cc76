"""Host handlers: one module per granted interface, each with ``register(host)``.

``Host`` adds one function to the linker and records every call to it as an event
``<interface>/<function>`` carrying its inputs and outputs. A handler returns ``Ok``/``Err``
for WIT results, or ``Recorded(value, data)`` when the value handed to wasm should be
recorded in a shorter form (``get-chain`` records the chain's length and head, not the
whole chain, which replay can rebuild from the record).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wasmtime import component as wc

from ..values import Err, Ok, Recorded, lower_result, to_data
from ..wit import signatures
from . import message_server, runtime, supervisor

if TYPE_CHECKING:
    from ..actor import Actor

MODULES = {
    "theater:simple/runtime": runtime,
    "theater:simple/message-server-host": message_server,
    "theater:simple/supervisor": supervisor,
}


class Host:
    def __init__(self, instance: wc.LinkerInstance, interface: str, actor: Actor) -> None:
        self.instance = instance
        self.interface = interface
        self.actor = actor

    def func(self, name: str, impl: Callable[..., Any]) -> None:
        event_type = f"{self.interface}/{name}"
        sig = signatures()[self.interface][name]
        ok_is_string = sig.endswith("-> result<string, string>")
        record = self.actor.record

        def call(_store: Any, *args: Any) -> Any:
            out = impl(*args)
            if isinstance(out, Recorded):
                record(event_type, {"input": to_data(args), "output": out.data})
                return out.value
            record(event_type, {"input": to_data(args), "output": to_data(out)})
            if isinstance(out, Ok | Err):
                return lower_result(out, ok_is_string)
            return out

        self.instance.add_func(name, call)


def link(linker: wc.Linker, actor: Actor, imports: dict[str, str]) -> None:
    """Defines every interface the component imports (all already checked as granted)."""
    with linker.root() as root:
        for base, exact in imports.items():
            with root.add_instance(exact) as instance:
                module = MODULES.get(base)
                if module is not None:            # theater:simple/types holds only types
                    module.register(Host(instance, base, actor))

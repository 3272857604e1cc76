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

import wasmtime
from wasmtime import component as wc

from ..codec import add_host_func
from ..records import host_event
from ..values import Recorded, lower, to_data
from . import message_server, runtime, supervisor

if TYPE_CHECKING:
    from ..actor import Actor
    from ..component import Shape

MODULES = {
    "theater:simple/runtime": runtime,
    "theater:simple/message-server-host": message_server,
    "theater:simple/supervisor": supervisor,
}


class Host:
    def __init__(self, instance: wc.LinkerInstance, interface: str, actor: Actor,
                 types: dict[str, wc.FuncType], shape: Shape) -> None:
        self.instance = instance
        self.interface = interface
        self.actor = actor
        self.types = types                  # the component's own view of each imported function
        self.shape = shape

    def func(self, name: str, impl: Callable[..., Any]) -> None:
        """Defines ``name`` if the component imports it, recording every call."""
        fty = self.types.get(name)
        if fty is None:
            return
        event_type = f"{self.interface}/{name}"
        record = self.actor.record

        def call(*args: Any) -> Any:
            out = impl(*args)
            if isinstance(out, Recorded):
                record(event_type, host_event(args, out.data))
                return lower(out.value)
            record(event_type, host_event(args, to_data(out)))
            return lower(out)

        add_host_func(self.instance, name, fty, call, self.shape.signature(self.interface, name))


def link(linker: wc.Linker, engine: wasmtime.Engine, component: wc.Component, actor: Actor, shape: Shape) -> None:
    """Defines every interface the component imports (all already checked as granted)."""
    types = component.type.imports(engine)
    with linker.root() as root:
        for base, exact in shape.imports.items():
            if exact not in types:               # (theater:simple/types: the adapter provides it)
                continue
            with root.add_instance(exact) as instance:
                module = MODULES.get(base)
                if module is not None:            # theater:simple/types holds only types
                    funcs = {n: e.ty for n, e in types[exact].ty.exports(engine).items()}
                    module.register(Host(instance, base, actor, funcs, shape))

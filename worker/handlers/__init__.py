"""Host handlers: found by their module's presence here (or a plug-in's spec), linked per component.

Every module of this package registers its handler class (``base.register``); plug-ins name
their worker module in their grant spec (``theater.grants``). ``link`` defines each function
a component imports, from whatever ``provide`` gives for it: the live actor's handlers,
each call recorded as ``<interface>/<function>`` with its inputs and outputs, or the
replayer's recorded answers.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import component as wc

from theater import grants
from theater.errors import ComponentError

from ..component import Shape
from ..crossing import add_host_func
from ..records import host_event
from ..values import Recorded, lower, to_data
from .base import REGISTRY, Handler

Provide = Callable[[str, str], Callable[..., Any]]    # (interface, function) -> implementation


_scanned: list[bool] = []      # this package's folder was listed (once: in the fork server)


def load() -> dict[str, type[Handler]]:
    """Every handler class: this package's modules and the plug-ins' (imported once)."""
    if not _scanned:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
        _scanned.append(True)
    for spec in grants.SPECS.values():
        if spec.worker:
            importlib.import_module(spec.worker)
    return REGISTRY


def link(linker: wc.Linker, engine: wasmtime.Engine, component: wc.Component | None, shape: Shape,
         provide: Provide) -> None:
    """Defines every function of every interface the component imports (``shape.imported``;
    interfaces that hold only types have none, and the byte adapter around the actor provides
    their types itself). WASI is linked by ``worker.wasi``. A component inside the adapter is
    linked from its shape and the WIT alone: walking its types through the C API took a new
    worker ~0.5 ms; one outside it needs its function types for their codecs."""
    assert shape.adapted or component is not None, "a component outside the adapter is linked from its types"
    types = None if component is None or shape.adapted else component.type.imports(engine)
    with linker.root() as root:
        for base, exact in shape.imports.items():
            if exact not in shape.imported:
                continue
            with root.add_instance(exact) as instance:
                funcs = None if types is None else types[exact].ty.exports(engine)
                for fn in shape.imported[exact]:
                    fty = None if funcs is None else funcs[fn].ty
                    add_host_func(instance, fn, fty, provide(base, fn), shape.signature(base, fn))


def live(handlers: list[Handler], record: Callable[[str, Any], None]) -> Provide:
    """The granted handlers' functions, each call recorded."""
    table = {(iface, fn): impl for h in handlers for iface, fns in h.functions().items() for fn, impl in fns.items()}

    def provide(interface: str, fn: str) -> Callable[..., Any]:
        impl = table.get((interface, fn))
        if impl is None:
            raise ComponentError(f"component imports {interface}.{fn}, which its handler does not implement")
        event_type = f"{interface}/{fn}"

        def call(*args: Any) -> Any:
            out = impl(*args)
            if isinstance(out, Recorded):
                record(event_type, host_event(args, out.data))
                return lower(out.value)
            record(event_type, host_event(args, to_data(out)))
            return lower(out)
        return call
    return provide

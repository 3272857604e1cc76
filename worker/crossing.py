"""Crossing the boundary: calling an export, and being called by the actor, with compiled codecs.

``Export`` calls one function of an instance through wasmtime's C API with its argument and
result slots allocated once; ``add_host_func`` defines a host function through a C trampoline.
Both convert values with the codecs of ``worker.codec``, chosen once per function: from its WIT
signature when the actor runs inside the byte adapter, else from its component type. A host
function's exception becomes a trap inside wasm and is raised again where the export was called.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable
from ctypes import byref
from functools import cache
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wc
from wasmtime.component import _enter

from . import wit
from .codec import Codec, Val, _neutralize, adapted, codec


def codecs(fty: wc.FuncType | None, sig: wit.Func | None) -> tuple[list[Codec], Codec | None]:
    """A function's parameter and result codecs: from its WIT signature when it goes through the
    adapter, else from its component type. (Shared: callers only read them.)"""
    if sig is not None:
        return _adapted_codecs(sig)
    assert fty is not None, "a function outside the adapter is known by its component type"
    return [codec(t) for _, t in fty.params], codec(fty.result) if fty.result is not None else None


@cache
def _adapted_codecs(sig: wit.Func) -> tuple[list[Codec], Codec | None]:
    return ([adapted(wit.parse(t)) for _, t in sig.params],
            adapted(wit.parse(sig.result)) if sig.result is not None else None)


def warm() -> None:
    """In the fork server: the codecs of every function of the Theater WIT, which each worker
    would otherwise build anew while it links its actor (codecs hold no state)."""
    for iface in wit.package().values():
        for f in iface.funcs.values():
            with contextlib.suppress(TypeError):     # a variant: such functions bypass the adapter
                _adapted_codecs(f)


class Export:
    """One export of an instance, callable with little overhead: its types are compiled once.

    Not reentrant (an actor runs one call at a time), so its argument and result slots
    are allocated once.
    """

    def __init__(self, func: wc.Func, store: wasmtime.Store, sig: wit.Func | None = None) -> None:
        # its component type only when there is no signature: reading it costs a new worker ~0.2 ms
        self.params, self.result = codecs(func.type(store) if sig is None else None, sig)
        self._func = byref(func._func)
        self._store = store                # the context below is only valid while the store lives
        self._ctx = store._context()
        self._args = (Val * len(self.params))()
        self._out = Val()
        self._out_ref = byref(self._out) if self.result is not None else None

    @classmethod
    def of(cls, instance: wc.Instance, store: wasmtime.Store, interface: str, fn: str,
           sig: wit.Func | None = None) -> Export:
        """Function ``fn`` of the exported instance ``interface`` (its exact export name)."""
        func = instance.get_func(store, instance.get_export_index(store, fn, instance.get_export_index(store,
                                                                                                        interface)))
        assert func is not None, f"{interface}.{fn} is not exported"
        return cls(func, store, sig)

    def __call__(self, *args: Any) -> Any:
        params = self._args
        lowered = 0
        try:
            for c, arg in zip(self.params, args, strict=True):
                c.lower(arg, params[lowered])
                lowered += 1
            err = ffi.wasmtime_component_func_call(self._func, self._ctx, params, lowered, self._out_ref,
                                                   1 if self._out_ref is not None else 0)
            if err:
                error = wasmtime.WasmtimeError._from_ptr(err)
                _enter.maybe_raise_last_exn()      # a host function's own exception, re-raised here
                raise error
            if self.result is None:
                return None
            out = self.result.lift(self._out)
            ffi.wasmtime_component_val_delete(self._out_ref)   # the whole result tree, boxes included
            _neutralize(self._out)          # wasmtime drops the slot's old value when it writes the next
            return out
        finally:
            for i in range(lowered):
                ffi.wasmtime_component_val_delete(byref(params[i]))
                _neutralize(params[i])


def raise_host_exception() -> None:
    """Raises what a host function raised during the last entry into wasm, if it raised (a
    call through wasmtime-py's own API, such as instantiating, reports only that it failed)."""
    _enter.maybe_raise_last_exn()


_HOST_FUNCS: dict[int, Callable[..., Any]] = {}


@ffi.wasmtime_component_func_callback_t
def _host_trampoline(idx, _context, _ty, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    """Runs a host function; an exception becomes a trap and is re-raised where the export was called."""
    try:
        _HOST_FUNCS[idx or 0](args, nargs, results)
        return 0
    except wasmtime.WasmtimeError as e:
        error = e
    except Exception as e:
        _enter.LAST_EXCEPTION = e
        error = wasmtime.WasmtimeError("python exception")
    return ctypes.cast(error._consume(), ctypes.c_void_p).value


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _host_finalize(idx):  # type: ignore[no-untyped-def]
    _HOST_FUNCS.pop(idx or 0, None)


def add_host_func(instance: wc.LinkerInstance, name: str, fty: wc.FuncType | None, impl: Callable[..., Any],
                  sig: wit.Func | None = None) -> None:
    """Defines ``name`` with the import's type compiled once (through the adapter given ``sig``,
    and then ``fty`` is not needed); ``impl`` gets and returns fast-codec shapes."""
    params, result = codecs(fty, sig)     # lifting only reads: wasmtime frees the arguments

    def call(args: Any, nargs: int, results: Any) -> None:
        out = impl(*[c.lift(args[i]) for i, c in enumerate(params)])
        if result is not None:
            result.lower(out, results[0])

    key = id(call)
    _HOST_FUNCS[key] = call
    name_bytes = name.encode()
    err = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(name_bytes), len(name_bytes), _host_trampoline, key,
        _host_finalize)
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)

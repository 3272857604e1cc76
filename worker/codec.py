"""Fast conversion of component values, compiled once per function type.

wasmtime-py converts every argument and result by walking the function's type through
ctypes on every call, and lowers a ``list<u8>`` one byte at a time: ~180 µs for a call
that does nothing. A ``Codec`` walks the type once and keeps a pair of closures per
value type; calls into the actor and host calls out of it use them (``worker.crossing``).
Given the function's WIT signature (``sig``), a codec
speaks to the adapter around the actor (``worker.adapter``) instead: a ``list<u8>`` crosses
as a latin-1 string, in bulk, records as tuples and enums as integers; else byte lists are
C values of one byte each (32 bytes of memory a byte, however they are filled).

It writes wasmtime's C values (``wasmtime_component_val_t``) through wasmtime-py's
private ctypes layer, so it is tied to the pinned wasmtime version. Ownership: lifting
only reads. A host call's arguments belong to wasmtime, which drops them after the call;
an export's result is ours, dropped whole (vectors, and the heap boxes of options and
results) by one ``val_delete`` once lifted. wasmtime-py's own conversion frees the parts
one by one and never the boxes: ~100 bytes leaked a call. Python shapes: ``list<u8>``
is ``bytes``, ``option`` is value-or-None, records are dicts keyed by WIT field name,
enums are str, tuples are tuples, and ``result`` is ``("ok", value)`` / ``("err", value)``
(never guessed from the Python types, unlike wasmtime-py).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from ctypes import byref
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime import component as wc

from . import wit

Val = ffi.wasmtime_component_val_t
VAL_SIZE = ctypes.sizeof(Val)
_OF = Val.of.offset                                # the union's offset in a value (8)
Lower = Callable[[Any, Val], None]
Lift = Callable[[Val], Any]

_K = {name: getattr(ffi, f"WASMTIME_COMPONENT_{name}").value for name in (
    "BOOL", "S8", "U8", "S16", "U16", "S32", "U32", "S64", "U64", "F32", "F64", "CHAR", "STRING", "LIST",
    "RECORD", "TUPLE", "ENUM", "OPTION", "RESULT", "VARIANT")}
_PRIMS: dict[type, tuple[str, str]] = {
    wc.Bool: ("BOOL", "boolean"), wc.S8: ("S8", "s8"), wc.U8: ("U8", "u8"), wc.S16: ("S16", "s16"),
    wc.U16: ("U16", "u16"), wc.S32: ("S32", "s32"), wc.U32: ("U32", "u32"), wc.S64: ("S64", "s64"),
    wc.U64: ("U64", "u64"), wc.F32: ("F32", "f32"), wc.F64: ("F64", "f64"),
}


class Codec:
    """How to lower a Python value into a C value of one type, and lift it back."""

    __slots__ = ("lift", "lower")

    def __init__(self, lower: Lower, lift: Lift) -> None:
        self.lower = lower
        self.lift = lift


def _neutralize(v: Val) -> None:
    """Marks a value whose contents were moved out, so deleting its container frees nothing twice."""
    v.kind = _K["BOOL"]
    v.of.boolean = False


def codec(t: wc.ValType) -> Codec:
    for cls, (kind_name, field) in _PRIMS.items():
        if isinstance(t, cls):
            return _prim(_K[kind_name], field)
    if isinstance(t, wc.String):
        return _text("STRING", "string")
    if isinstance(t, wc.ListType):
        return _bytes() if isinstance(t.element, wc.U8) else _list(codec(t.element))
    if isinstance(t, wc.TupleType):
        return _tuple([codec(e) for e in t.elements])
    if isinstance(t, wc.OptionType):
        return _option(codec(t.payload))
    if isinstance(t, wc.ResultType):
        return _result(codec(t.ok) if t.ok is not None else None, codec(t.err) if t.err is not None else None)
    if isinstance(t, wc.RecordType):
        return _record([(name, codec(ft)) for name, ft in t.fields])
    if isinstance(t, wc.EnumType):
        return _text("ENUM", "enumeration")
    if isinstance(t, wc.VariantType):
        return _variant({name: codec(p) if p is not None else None for name, p in t.cases})
    if isinstance(t, wc.OwnType | wc.BorrowType):
        return _no_resource()
    raise TypeError(f"no fast conversion for component type {type(t).__name__}")


def _prim(kind: int, field: str) -> Codec:
    def lower(value: Any, v: Val) -> None:
        v.kind = kind
        setattr(v.of, field, value)

    def lift(v: Val) -> Any:
        return getattr(v.of, field)
    return Codec(lower, lift)


def _text(kind: str, field: str) -> Codec:
    """A string, or an enum case by name: UTF-8 in a byte vector."""
    k = _K[kind]

    def lower(value: Any, v: Val) -> None:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        v.kind = k
        setattr(v.of, field, ffi.str_to_capi(value))

    def lift(v: Val) -> Any:
        vec = getattr(v.of, field)
        return ctypes.string_at(vec.data, vec.size).decode("utf-8")
    return Codec(lower, lift)


def _bytes() -> Codec:
    """list<u8> as bytes: one C array of n values, filled and read with strided slices."""
    u8 = _K["U8"]

    def lower(value: Any, v: Val) -> None:
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        n = len(value)
        raw = ffi.wasmtime_component_vallist_t()
        ffi.wasmtime_component_vallist_new_uninit(raw, n)
        if n:
            buf = bytearray(n * VAL_SIZE)
            buf[0::VAL_SIZE] = bytes([u8]) * n
            buf[_OF::VAL_SIZE] = value
            ctypes.memmove(raw.data, bytes(buf), len(buf))
        v.kind = _K["LIST"]
        v.of.list = raw

    def lift(v: Val) -> Any:
        vec = v.of.list
        n = vec.size
        return ctypes.string_at(vec.data, n * VAL_SIZE)[_OF::VAL_SIZE] if n else b""
    return Codec(lower, lift)


_WIT_PRIMS = {"bool": ("BOOL", "boolean"), "s8": ("S8", "s8"), "u8": ("U8", "u8"), "s16": ("S16", "s16"),
              "u16": ("U16", "u16"), "s32": ("S32", "s32"), "u32": ("U32", "u32"), "s64": ("S64", "s64"),
              "u64": ("U64", "u64"), "f32": ("F32", "f32"), "f64": ("F64", "f64")}


def adapted(d: wit.Desc) -> Codec:
    """A value of WIT type ``d`` (``wit.parse``) as the adapter shows it to the host."""
    kind = d[0]
    if kind in _WIT_PRIMS:
        name, field = _WIT_PRIMS[kind]
        return _prim(_K[name], field)
    if kind == "string":
        return _text("STRING", "string")
    if kind == "list":
        return _latin1() if d[1] == ("u8",) else _list(adapted(d[1]))
    if kind == "option":
        return _option(adapted(d[1]))
    if kind == "result":
        return _result(adapted(d[1]) if d[1] is not None else None, adapted(d[2]) if d[2] is not None else None)
    if kind == "tuple":
        return _tuple([adapted(e) for e in d[1]])
    if kind == "record":
        return _record_as_tuple([(name, adapted(t)) for name, t in d[1]])
    if kind == "enum":
        return _enum_as_int(d[1])
    raise TypeError(f"no adapted conversion for WIT type {kind}")


def _latin1() -> Codec:
    """list<u8> as the adapter's latin-1 string: one character a byte, UTF-8 in the C value.
    ASCII is already its own UTF-8; other bytes are converted in C (decode, encode)."""
    k = _K["STRING"]

    def lower(value: Any, v: Val) -> None:
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        data = bytes(value) if value.isascii() else value.decode("latin-1").encode()
        vec = ffi.wasm_byte_vec_t()
        ffi.wasm_byte_vec_new_uninitialized(byref(vec), len(data))
        if data:
            ctypes.memmove(vec.data, data, len(data))
        v.kind = k
        v.of.string = vec

    def lift(v: Val) -> Any:
        vec = v.of.string
        data = ctypes.string_at(vec.data, vec.size)
        return data if data.isascii() else data.decode().encode("latin-1")
    return Codec(lower, lift)


def _record_as_tuple(fields: list[tuple[str, Codec]]) -> Codec:
    """A record (dict by field name) as the adapter's tuple of its fields, in order."""
    names = [name for name, _ in fields]
    inner = _tuple([c for _, c in fields])

    def lower(value: Any, v: Val) -> None:
        inner.lower(tuple(value[n] for n in names), v)

    def lift(v: Val) -> Any:
        return dict(zip(names, inner.lift(v), strict=True))
    return Codec(lower, lift)


def _enum_as_int(names: tuple[str, ...]) -> Codec:
    """An enum case (by name) as the adapter's integer: its index, as wide as its discriminant."""
    kind, field = ("U8", "u8") if len(names) <= 256 else ("U16", "u16") if len(names) <= 65536 else ("U32", "u32")
    k, index = _K[kind], {n: i for i, n in enumerate(names)}

    def lower(value: Any, v: Val) -> None:
        v.kind = k
        setattr(v.of, field, index[value])

    def lift(v: Val) -> Any:
        return names[getattr(v.of, field)]
    return Codec(lower, lift)


def _list(elem: Codec) -> Codec:
    def lower(value: Any, v: Val) -> None:
        raw = ffi.wasmtime_component_vallist_t()
        ffi.wasmtime_component_vallist_new_uninit(raw, len(value))
        for i, item in enumerate(value):
            elem.lower(item, raw.data[i])
        v.kind = _K["LIST"]
        v.of.list = raw

    def lift(v: Val) -> Any:
        vec = v.of.list
        data, item = vec.data, elem.lift
        return [item(data[i]) for i in range(vec.size)]
    return Codec(lower, lift)


def _tuple(elems: list[Codec]) -> Codec:
    def lower(value: Any, v: Val) -> None:
        raw = ffi.wasmtime_component_valtuple_t()
        ffi.wasmtime_component_valtuple_new_uninit(raw, len(elems))
        for i, (c, item) in enumerate(zip(elems, value, strict=True)):
            c.lower(item, raw.data[i])
        v.kind = _K["TUPLE"]
        v.of.tuple = raw

    lifts = [c.lift for c in elems]

    def lift(v: Val) -> Any:
        data = v.of.tuple.data
        return tuple([f(data[i]) for i, f in enumerate(lifts)])
    return Codec(lower, lift)


def _record(fields: list[tuple[str, Codec]]) -> Codec:
    def lower(value: Any, v: Val) -> None:
        raw = ffi.wasmtime_component_valrecord_t()
        ffi.wasmtime_component_valrecord_new_uninit(raw, len(fields))
        for i, (name, c) in enumerate(fields):
            c.lower(value[name], raw.data[i].val)
            raw.data[i].name = ffi.str_to_capi(name)
        v.kind = _K["RECORD"]
        v.of.record = raw

    def lift(v: Val) -> Any:
        data = v.of.record.data
        return {name: c.lift(data[i].val) for i, (name, c) in enumerate(fields)}
    return Codec(lower, lift)


def _boxed(c: Codec | None, value: Any) -> Any:
    """A heap value (what option and result payloads point to), or NULL."""
    if c is None:
        return None
    inner = Val()
    c.lower(value, inner)
    return ffi.wasmtime_component_val_new(byref(inner))


def _option(payload: Codec) -> Codec:
    inner = payload.lift

    def lower(value: Any, v: Val) -> None:
        v.kind = _K["OPTION"]
        v.of.option = _boxed(payload, value) if value is not None else None

    def lift(v: Val) -> Any:
        box = v.of.option
        return inner(box.contents) if box else None
    return Codec(lower, lift)


def _result(ok: Codec | None, err: Codec | None) -> Codec:
    def lower(value: Any, v: Val) -> None:
        tag, payload = value
        v.kind = _K["RESULT"]
        v.of.result.is_ok = tag == "ok"
        v.of.result.val = _boxed(ok if tag == "ok" else err, payload)

    def lift(v: Val) -> Any:
        result = v.of.result
        tag, c, box = ("ok", ok, result.val) if result.is_ok else ("err", err, result.val)
        return tag, (c.lift(box.contents) if c is not None and box else None)
    return Codec(lower, lift)


def _variant(cases: dict[str, Codec | None]) -> Codec:
    """A variant as ``(case, payload)``, like a result (payload None for a case without one)."""
    k = _K["VARIANT"]

    def lower(value: Any, v: Val) -> None:
        case, payload = value
        v.kind = k
        v.of.variant.discriminant = ffi.str_to_capi(case)
        v.of.variant.val = _boxed(cases[case], payload)

    def lift(v: Val) -> Any:
        var = v.of.variant
        case = ctypes.string_at(var.discriminant.data, var.discriminant.size).decode("utf-8")
        c, box = cases[case], var.val
        return case, (c.lift(box.contents) if c is not None and box else None)
    return Codec(lower, lift)


def _no_resource() -> Codec:
    """Resources are wasmtime's own (WASI's streams, sockets): a host function here never takes
    one in (a borrow it did not give back would fail the call) and never hands one out (it
    answers with the other case of a result)."""
    def refuse(*_: Any) -> Any:
        raise TypeError("Theater's host functions pass no resources")
    return Codec(refuse, refuse)

"""The function signatures of the ``theater:simple`` WIT package, read from ``theater/wit``.

The WIT files are the one source of truth: this module parses the small subset they use
(interfaces, ``use``, type aliases, records, enums, functions) and renders both the
expected signatures and a component's actual types in the same text form, so a
mismatch reads like ``handle-send: expected func(option<list<u8>>, tuple<list<u8>>) -> ...,
found func(...)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from wasmtime import component as wc

PACKAGE = "theater:simple"

_COMMENT = re.compile(r"//[^\n]*")
_INTERFACE = re.compile(r"interface\s+([\w-]+)\s*\{(.*?)\n\}", re.S)
_USE = re.compile(r"use\s+([\w-]+)\.\{([^}]*)\}\s*;")
_ALIAS = re.compile(r"type\s+([\w-]+)\s*=\s*([^;]+);")
_RECORD = re.compile(r"record\s+([\w-]+)\s*\{([^}]*)\}")
_ENUM = re.compile(r"enum\s+([\w-]+)\s*\{([^}]*)\}")
_FUNC = re.compile(r"([\w-]+)\s*:\s*func\s*\((.*?)\)\s*(?:->\s*([^;]+))?;", re.S)


def _split_top(text: str) -> list[str]:
    """Splits on commas that are not inside <...> or {...}."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "<{":
            depth += 1
        elif ch in ">}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


@dataclass(frozen=True)
class Func:
    params: tuple[tuple[str, str], ...]      # (name, type with every named type expanded)
    result: str | None

    def signature(self) -> str:
        return f"func({', '.join(t for _, t in self.params)})" + (f" -> {self.result}" if self.result else "")


@dataclass(frozen=True)
class Interface:
    funcs: dict[str, Func]
    types: dict[str, str]                   # every type name usable in it (its own and used), expanded


@cache
def package() -> dict[str, Interface]:
    """``{"theater:simple/runtime": Interface(...), ...}``, parsed from theater/wit."""
    text = "\n".join(
        _COMMENT.sub("", f.read_text()) for f in resources.files("theater").joinpath("wit").iterdir()
        if f.name.endswith(".wit")
    )
    bodies = {m.group(1): m.group(2) for m in _INTERFACE.finditer(text)}
    named: dict[str, dict[str, str]] = {}
    for iface, body in bodies.items():
        types: dict[str, str] = {}
        for m in _ALIAS.finditer(body):
            types[m.group(1)] = m.group(2).strip()
        for m in _RECORD.finditer(body):
            fields = [f.split(":", 1) for f in _split_top(m.group(2))]
            types[m.group(1)] = "record { " + ", ".join(f"{n.strip()}: {t.strip()}" for n, t in fields) + " }"
        for m in _ENUM.finditer(body):
            types[m.group(1)] = "enum { " + ", ".join(_split_top(m.group(2))) + " }"
        named[iface] = types

    def expand(ty: str, scope: dict[str, str]) -> str:
        ty = ty.strip()
        if ty in scope:
            return expand(scope[ty], scope)
        m = re.fullmatch(r"([\w-]+)<(.*)>", ty, re.S)
        if m:
            return f"{m.group(1)}<{', '.join(expand(a, scope) for a in _split_top(m.group(2)))}>"
        m = re.fullmatch(r"record \{ (.*) \}", ty, re.S)
        if m:
            fields = [f.split(":", 1) for f in _split_top(m.group(1))]
            return "record { " + ", ".join(f"{n.strip()}: {expand(t, scope)}" for n, t in fields) + " }"
        return ty

    out: dict[str, Interface] = {}
    for iface, body in bodies.items():
        scope = dict(named[iface])
        for m in _USE.finditer(body):
            for name in _split_top(m.group(2)):
                source = named[m.group(1)]
                scope[name] = expand(source[name], source)
        funcs = {}
        for m in _FUNC.finditer(body):
            params = tuple((n.strip(), expand(t, scope)) for n, t in (p.split(":", 1) for p in _split_top(m.group(2))))
            funcs[m.group(1)] = Func(params, expand(m.group(3), scope) if m.group(3) else None)
        out[f"{PACKAGE}/{iface}"] = Interface(funcs, {n: expand(t, scope) for n, t in scope.items()})
    return out


@cache
def signatures() -> dict[str, dict[str, str]]:
    """``{"theater:simple/runtime": {"log": "func(string)", ...}, ...}`` with every type expanded."""
    return {name: {fn: f.signature() for fn, f in iface.funcs.items()} for name, iface in package().items()}


# A type as data: ("u8",), ("string",), ("list", T), ("option", T), ("result", T | None, E | None),
# ("tuple", (T, ...)), ("record", ((name, T), ...)), ("enum", (name, ...)).
Desc = tuple[Any, ...]


@cache
def parse(text: str) -> Desc:
    """An expanded type (as ``package()`` and ``render`` write them) as data."""
    text = text.strip()
    m = re.fullmatch(r"([\w-]+)<(.*)>", text, re.S)
    if m:
        kind, args = m.group(1), [None if a == "_" else parse(a) for a in _split_top(m.group(2))]
        if kind in ("list", "option"):
            return (kind, args[0])
        if kind == "tuple":
            return ("tuple", tuple(args))
        if kind == "result":
            return ("result", args[0], args[1] if len(args) > 1 else None)
        raise ValueError(f"unknown type {text!r}")
    m = re.fullmatch(r"record \{ (.*) \}", text, re.S)
    if m:
        fields = [f.split(":", 1) for f in _split_top(m.group(1))]
        return ("record", tuple((n.strip(), parse(t)) for n, t in fields))
    m = re.fullmatch(r"enum \{ (.*) \}", text, re.S)
    if m:
        return ("enum", tuple(_split_top(m.group(1))))
    if text == "result":
        return ("result", None, None)
    return (text,)


def render_func(fty: wc.FuncType) -> str:
    params = ", ".join(render(t) for _, t in fty.params)
    result = fty.result
    return f"func({params})" + (f" -> {render(result)}" if result is not None else "")


_PRIMS = {
    wc.Bool: "bool", wc.S8: "s8", wc.S16: "s16", wc.S32: "s32", wc.S64: "s64", wc.U8: "u8", wc.U16: "u16",
    wc.U32: "u32", wc.U64: "u64", wc.F32: "f32", wc.F64: "f64", wc.Char: "char", wc.String: "string",
}


def render(t: wc.ValType) -> str:
    """A component value type in WIT syntax, with records and enums written out."""
    for cls, name in _PRIMS.items():
        if isinstance(t, cls):
            return name
    if isinstance(t, wc.ListType):
        return f"list<{render(t.element)}>"
    if isinstance(t, wc.TupleType):
        return f"tuple<{', '.join(render(e) for e in t.elements)}>"
    if isinstance(t, wc.OptionType):
        return f"option<{render(t.payload)}>"
    if isinstance(t, wc.ResultType):
        ok = render(t.ok) if t.ok is not None else "_"
        if t.err is None:
            return f"result<{ok}>" if t.ok is not None else "result"
        return f"result<{ok}, {render(t.err)}>"
    if isinstance(t, wc.RecordType):
        return "record { " + ", ".join(f"{n}: {render(v)}" for n, v in t.fields) + " }"
    if isinstance(t, wc.EnumType):
        return "enum { " + ", ".join(t.names) + " }"
    return type(t).__name__

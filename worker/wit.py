"""The function signatures of the ``theater:simple`` WIT package, read from ``theater/wit``.

The WIT files are the one source of truth: this module parses the small subset they use
(interfaces, ``use``, type aliases, records, enums, variants, functions) and renders both
the expected signatures and a component's actual types in the same text form, so a
mismatch reads like ``handle-send: expected func(option<list<u8>>, tuple<list<u8>>) -> ...,
found func(...)``. Named types are written out in full (a record as ``record { a: u8 }``),
since a component's types carry no names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from wasmtime import component as wc

from theater import grants

PACKAGE = "theater:simple"

_COMMENT = re.compile(r"//[^\n]*")
_PACKAGE = re.compile(r"^\s*package\s+([\w:-]+)(?:@[\w.-]+)?\s*;", re.M)
_INTERFACE = re.compile(r"interface\s+([\w-]+)\s*\{(.*?)\n\}", re.S)
_USE = re.compile(r"use\s+([\w-]+)\.\{([^}]*)\}\s*;")
_ALIAS = re.compile(r"type\s+([\w-]+)\s*=\s*([^;]+);")
# record, enum and variant bodies hold no braces, so the first "}" closes them
_COMPOUND = re.compile(r"(record|enum|variant)\s+([\w-]+)\s*\{([^}]*)\}")
_GENERIC = re.compile(r"([\w-]+)<(.*)>", re.S)
_COMPOUND_TYPE = re.compile(r"(record|enum|variant) \{ (.*) \}", re.S)
_FUNC = re.compile(r"([\w-]+)\s*:\s*func\s*\((.*?)\)\s*(?:->\s*([^;]+))?;", re.S)
_CASE = re.compile(r"([\w-]+)\s*(?:\((.*)\))?", re.S)


def _split_top(text: str) -> list[str]:
    """Splits on commas that are not inside <...>, {...} or (...)."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "<{(":
            depth += 1
        elif ch in ">})":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _fields(body: str) -> list[tuple[str, str]]:
    return [(n.strip(), t.strip()) for n, t in (f.split(":", 1) for f in _split_top(body))]


def _cases(body: str) -> list[tuple[str, str | None]]:
    out = []
    for case in _split_top(body):
        m = _CASE.fullmatch(case)
        if m is None:
            raise ValueError(f"unreadable variant case in theater/wit: {case!r}")
        out.append((m.group(1), m.group(2)))
    return out


def _expand(ty: str, scope: dict[str, str]) -> str:
    """``ty`` with every name in ``scope`` replaced by its definition, recursively."""
    ty = ty.strip()
    if ty in scope:
        return _expand(scope[ty], scope)
    m = _GENERIC.fullmatch(ty)
    if m:
        return f"{m.group(1)}<{', '.join(_expand(a, scope) for a in _split_top(m.group(2)))}>"
    m = _COMPOUND_TYPE.fullmatch(ty)
    if m and m.group(1) == "record":
        return "record { " + ", ".join(f"{n}: {_expand(t, scope)}" for n, t in _fields(m.group(2))) + " }"
    if m and m.group(1) == "variant":          # an enum's cases name no types
        return "variant { " + ", ".join(n if t is None else f"{n}({_expand(t, scope)})"
                                        for n, t in _cases(m.group(2))) + " }"
    return ty


def _definitions(body: str) -> dict[str, str]:
    """The named types an interface body defines, unexpanded: ``{"content-ref": "record { hash: string }"}``."""
    types = {m.group(1): m.group(2).strip() for m in _ALIAS.finditer(body)}
    for m in _COMPOUND.finditer(body):
        kind, name, inner = m.groups()
        if kind == "record":
            types[name] = "record { " + ", ".join(f"{n}: {t}" for n, t in _fields(inner)) + " }"
        elif kind == "enum":
            types[name] = "enum { " + ", ".join(_split_top(inner)) + " }"
        else:
            types[name] = "variant { " + ", ".join(n if t is None else f"{n}({t})" for n, t in _cases(inner)) + " }"
    return types


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
    """``{"theater:simple/runtime": Interface(...), ...}``: the WIT files in ``theater/wit`` and the
    WIT of handlers registered from plug-ins. Interfaces that define only types (``types``,
    ``http-types``) have no functions."""
    texts = [f.read_text() for f in resources.files("theater").joinpath("wit").iterdir() if f.name.endswith(".wit")]
    texts += [spec.wit for spec in grants.SPECS.values() if spec.wit]
    packages: dict[str, list[str]] = {}
    for text in texts:
        m = _PACKAGE.search(text)
        packages.setdefault(m.group(1) if m else PACKAGE, []).append(_COMMENT.sub("", text))
    out: dict[str, Interface] = {}
    for name, parts in packages.items():
        out.update(_package(name, "\n".join(parts)))
    return out


@cache
def signatures() -> dict[str, dict[str, str]]:
    """``{"theater:simple/runtime": {"log": "func(string)", ...}, ...}`` with every type expanded."""
    return {name: {fn: f.signature() for fn, f in iface.funcs.items()} for name, iface in package().items()}


def _package(package: str, text: str) -> dict[str, Interface]:
    bodies = {m.group(1): m.group(2) for m in _INTERFACE.finditer(text)}
    named = {iface: _definitions(body) for iface, body in bodies.items()}
    out: dict[str, Interface] = {}
    for iface, body in bodies.items():
        scope = dict(named[iface])
        for m in _USE.finditer(body):
            for name in _split_top(m.group(2)):
                source = named[m.group(1)]
                scope[name] = _expand(source[name], source)
        funcs = {}
        for m in _FUNC.finditer(body):
            params = tuple((n, _expand(t, scope)) for n, t in _fields(m.group(2))) if m.group(2).strip() else ()
            funcs[m.group(1)] = Func(params, _expand(m.group(3), scope) if m.group(3) else None)
        out[f"{package}/{iface}"] = Interface(funcs, {n: _expand(t, scope) for n, t in scope.items()})
    return out


# A type as data: ("u8",), ("string",), ("list", T), ("option", T), ("result", T | None, E | None),
# ("tuple", (T, ...)), ("record", ((name, T), ...)), ("enum", (name, ...)), ("variant", ((name, T | None), ...)).
Desc = tuple[Any, ...]


@cache
def parse(text: str) -> Desc:
    """An expanded type (as ``package()`` and ``render`` write them) as data."""
    text = text.strip()
    m = _GENERIC.fullmatch(text)
    if m:
        kind, args = m.group(1), [None if a == "_" else parse(a) for a in _split_top(m.group(2))]
        if kind in ("list", "option"):
            return (kind, args[0])
        if kind == "tuple":
            return ("tuple", tuple(args))
        if kind == "result":
            return ("result", args[0], args[1] if len(args) > 1 else None)
        raise ValueError(f"unknown type {text!r}")
    m = _COMPOUND_TYPE.fullmatch(text)
    if m and m.group(1) == "record":
        return ("record", tuple((n, parse(t)) for n, t in _fields(m.group(2))))
    if m and m.group(1) == "enum":
        return ("enum", tuple(_split_top(m.group(2))))
    if m:
        return ("variant", tuple((n, None if t is None else parse(t)) for n, t in _cases(m.group(2))))
    if text == "result":
        return ("result", None, None)
    return (text,)


# The WASI 0.2 interfaces wasmtime serves (worker/wasi.py shadows what carries outside values).
WASI_PROVIDED = ("wasi:cli/", "wasi:clocks/", "wasi:filesystem/", "wasi:io/", "wasi:random/", "wasi:sockets/")


def is_wasi(interface: str) -> bool:
    return interface.startswith("wasi:")


def imports_wasi(imports: dict[str, str]) -> bool:
    return any(is_wasi(base) for base in imports)


def wasi_unprovided(name: str) -> str | None:
    """Why a ``wasi:`` import cannot be served (None if it can)."""
    version = name.partition("@")[2]
    if not name.startswith(WASI_PROVIDED):
        return "Theater provides WASI cli, clocks, filesystem, io, random and sockets only"
    if not version.startswith("0.2."):
        return "Theater provides WASI 0.2.x only"
    return None


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
    if isinstance(t, wc.VariantType):
        return "variant { " + ", ".join(n if p is None else f"{n}({render(p)})" for n, p in t.cases) + " }"
    return type(t).__name__

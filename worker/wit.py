"""The function signatures of the ``theater:simple`` WIT package, read from ``theater/wit``.

The WIT files are the one source of truth: this module parses the small subset they use
(interfaces, ``use``, type aliases, records, enums, functions) and renders both the
expected signatures and a component's actual types in the same text form, so a
mismatch reads like ``handle-send: expected func(option<list<u8>>, tuple<list<u8>>) -> ...,
found func(...)``.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from wasmtime import component as wc

from theater import grants

PACKAGE = "theater:simple"

_COMMENT = re.compile(r"//[^\n]*")
_PACKAGE = re.compile(r"^\s*package\s+([\w:-]+)(?:@[\w.-]+)?\s*;", re.M)
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


@cache
def signatures() -> dict[str, dict[str, str]]:
    """``{"theater:simple/runtime": {"log": "func(string)", ...}, ...}`` with every type expanded:
    the WIT files in ``theater/wit`` and the WIT of handlers registered from plug-ins."""
    texts = [f.read_text() for f in resources.files("theater").joinpath("wit").iterdir() if f.name.endswith(".wit")]
    texts += [spec.wit for spec in grants.SPECS.values() if spec.wit]
    packages: dict[str, list[str]] = {}
    for text in texts:
        m = _PACKAGE.search(text)
        packages.setdefault(m.group(1) if m else PACKAGE, []).append(_COMMENT.sub("", text))
    out: dict[str, dict[str, str]] = {}
    for package, parts in packages.items():
        out.update(_package_signatures(package, "\n".join(parts)))
    return out


def _package_signatures(package: str, text: str) -> dict[str, dict[str, str]]:
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

    out: dict[str, dict[str, str]] = {}
    for iface, body in bodies.items():
        scope = dict(named[iface])
        for m in _USE.finditer(body):
            for name in _split_top(m.group(2)):
                source = named[m.group(1)]
                scope[name] = expand(source[name], source)
        funcs = {}
        for m in _FUNC.finditer(body):
            params = [expand(p.split(":", 1)[1], scope) for p in _split_top(m.group(2))]
            result = f" -> {expand(m.group(3), scope)}" if m.group(3) else ""
            funcs[m.group(1)] = f"func({', '.join(params)}){result}"
        out[f"{package}/{iface}"] = funcs
    return out


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

"""An adapter component around each actor, so that bytes cross into wasm as bytes.

wasmtime's C API hands a component value over as one 32-byte C value per list element, and
converts each again: a ``list<u8>`` cost ~160 bytes of host memory per byte and, past a few
MiB, exhausts the fuel wasmtime allots to one host call ("too much data is being copied
between the host and the guest"). A 4 MiB message OOM-killed an actor (issue 16, finding 5).
A ``string`` crosses in bulk, one copy. The C API gives no way to reach a component's
memory or its ``cabi_realloc``, so the actor's own component cannot be fed directly.

So the worker runs the actor inside an outer component that shows the host the same
functions with every ``list<u8>`` typed as a ``string`` in the latin1+utf16 encoding (each
byte one latin-1 character, so every byte string is valid), records as tuples and enums as
integers (the same layout in memory, and no named types for the host to declare). Two
nested components hold the adapter code: ``E`` lifts the actor's exports for the host and
``I`` lifts the host's functions for the actor (two, because a component instance may not be
re-entered: the host enters ``E``, the actor calls ``I``). Each has a small memory and bump
allocator; between it and the actor, wasmtime's fused adapters copy a ``list<u8>`` as one
block. ``worker.codec`` turns bytes into latin-1 text and back, in C.

The actor is spliced in as bytes: WAT cannot embed a binary component, so the outer is
written with an empty placeholder component whose section is then replaced. Whatever this
cannot wrap (an unknown type, a parameter name the WIT does not use) raises ``Unsupported``
or fails to compile; the worker then runs the actor as it is (see ``worker.component``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import wasmtime

from . import wit
from .wit import Desc

PLACEHOLDER = b"\x00asm\x0d\x00\x01\x00"        # an empty component: (component)
SLOT = 16              # where a trampoline asks a call's spilled results to be written
HEAP = 1024            # the bump heap starts here, and goes back here after every call
MAX_FLAT_PARAMS, MAX_FLAT_RESULTS = 16, 1
_PRIM_ABI = {"bool": (1, "i32"), "s8": (1, "i32"), "u8": (1, "i32"), "s16": (2, "i32"), "u16": (2, "i32"),
             "s32": (4, "i32"), "u32": (4, "i32"), "f32": (4, "f32"),
             "s64": (8, "i64"), "u64": (8, "i64"), "f64": (8, "f64")}
TYPES = f"{wit.PACKAGE}/types"


class Unsupported(Exception):
    """The component uses something the adapter does not handle; it runs unwrapped."""


# ---- the canonical ABI, for the types the WIT package uses ------------------------------------

def _flat(d: Desc) -> list[str]:
    kind = d[0]
    if kind in _PRIM_ABI:
        return [_PRIM_ABI[kind][1]]
    if kind in ("string", "list"):
        return ["i32", "i32"]
    if kind in ("tuple", "record"):
        return [t for f in _fields(d) for t in _flat(f)]
    if kind == "enum":
        return ["i32"]
    cases = [d[1]] if kind == "option" else [d[1], d[2]]
    joined: list[str] = []
    for case in cases:
        for i, t in enumerate(_flat(case) if case is not None else []):
            if i == len(joined):
                joined.append(t)
            elif joined[i] != t:
                joined[i] = "i32" if {joined[i], t} == {"i32", "f32"} else "i64"
    return ["i32", *joined]


def _fields(d: Desc) -> list[Desc]:
    return list(d[1]) if d[0] == "tuple" else [t for _, t in d[1]]


def _align_to(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _size_align(d: Desc) -> tuple[int, int]:
    kind = d[0]
    if kind in _PRIM_ABI:
        size = _PRIM_ABI[kind][0]
        return size, size
    if kind in ("string", "list"):
        return 8, 4
    if kind in ("tuple", "record"):
        end, align = 0, 1
        for f in _fields(d):
            s, a = _size_align(f)
            end, align = _align_to(end, a) + s, max(align, a)
        return _align_to(end, align), align
    if kind == "enum":
        return _disc(len(d[1])), _disc(len(d[1]))
    cases = [d[1]] if kind == "option" else [d[1], d[2]]
    sizes = [_size_align(c) if c is not None else (0, 1) for c in cases]
    payload_align = max(a for _, a in sizes)
    align = max(1, payload_align)
    end = _align_to(1, payload_align) + max(s for s, _ in sizes)
    return _align_to(end, align), align


def _disc(cases: int) -> int:
    return 1 if cases <= 256 else 2 if cases <= 65536 else 4


# ---- types as WAT ---------------------------------------------------------------------------

View = Callable[[Desc], str]


def host_view(d: Desc) -> str:
    """The type the host sees: bytes as a string, records as tuples, enums as integers."""
    kind = d[0]
    if kind == "list":
        return "string" if d[1] == ("u8",) else f"(list {host_view(d[1])})"
    if kind in ("tuple", "record"):
        return f"(tuple {' '.join(host_view(f) for f in _fields(d))})"
    if kind == "enum":
        return {1: "u8", 2: "u16", 4: "u32"}[_disc(len(d[1]))]
    return _common(d, host_view)


def _common(d: Desc, view: View) -> str:
    """Options, results, strings and primitives: written the same in both views."""
    kind = d[0]
    if kind == "option":
        return f"(option {view(d[1])})"
    if kind == "result":
        ok = f" {view(d[1])}" if d[1] is not None else ""
        err = f" (error {view(d[2])})" if d[2] is not None else ""
        return f"(result{ok}{err})"
    if kind == "string" or kind in _PRIM_ABI:
        return kind
    raise Unsupported(f"type {kind}")


class _Named:
    """Records and enums, which a component must name where it imports or exports them: each
    gets a name ``t<n>`` (in dependency order), defined once in the outer component and
    imported (``eq`` that definition) by the nested adapter components."""

    def __init__(self) -> None:
        self.order: list[Desc] = []

    def collect(self, d: Desc | None) -> None:
        if d is None:
            return
        kind = d[0]
        if kind in ("list", "option"):
            self.collect(d[1])
        elif kind == "result":
            self.collect(d[1])
            self.collect(d[2])
        elif kind in ("tuple", "record"):
            for f in _fields(d):
                self.collect(f)
        if kind in ("record", "enum") and d not in self.order:
            self.order.append(d)

    def ref(self, d: Desc) -> str:
        """The actor's own view of a type, naming records and enums."""
        kind = d[0]
        if kind in ("record", "enum"):
            return f"$t{self.order.index(d)}"
        if kind == "list":
            return f"(list {self.ref(d[1])})"
        if kind == "tuple":
            return f"(tuple {' '.join(self.ref(f) for f in d[1])})"
        return _common(d, self.ref)

    def definition(self, d: Desc) -> str:
        if d[0] == "enum":
            return "(enum " + " ".join(f'"{n}"' for n in d[1]) + ")"
        return "(record " + " ".join(f'(field "{n}" {self.ref(t)})' for n, t in d[1]) + ")"

    def imports(self) -> str:
        """For a nested component: each named type defined, then imported as equal to it."""
        out = []
        for i, d in enumerate(self.order):
            out.append(f'(type $d{i} {self.definition(d)}) (import "t{i}" (type $t{i} (eq $d{i})))')
        return "\n    ".join(out)

    def args(self) -> str:
        return " ".join(f'(with "t{i}" (type $t{i}))' for i in range(len(self.order)))


# ---- functions ------------------------------------------------------------------------------

class _Fn:
    """One function the adapter forwards: its WIT signature and its core signatures."""

    def __init__(self, sig: wit.Func) -> None:
        self.sig = sig
        self.params = [wit.parse(t) for _, t in sig.params]
        self.result = wit.parse(sig.result) if sig.result is not None else None
        flat = [t for p in self.params for t in _flat(p)]
        self.core_params = flat if len(flat) <= MAX_FLAT_PARAMS else ["i32"]
        flat_results = _flat(self.result) if self.result is not None else []
        self.spills = len(flat_results) > MAX_FLAT_RESULTS
        self.core_results = ["i32"] if self.spills else flat_results
        if self.result is not None and self.spills and _size_align(self.result)[0] > HEAP - SLOT:
            raise Unsupported("a result too large for the adapter's result slot")

    def func_type(self, view: View) -> str:
        names = [n for n, _ in self.sig.params]
        params = " ".join(f'(param "{n}" {view(p)})' for n, p in zip(names, self.params, strict=True))
        result = f" (result {view(self.result)})" if self.result is not None else ""
        return f"(func {params}{result})"

    def lowered_import(self, i: int) -> str:
        """The core import of the lowered function a trampoline calls."""
        params = self.core_params + (["i32"] if self.spills else [])
        results = [] if self.spills else self.core_results
        return f'(import "f" "{i}" (func $f{i} {_params(params)} {_results(results)}))'

    def trampoline(self, i: int) -> str:
        """Core code between a lifted function (what calls in) and a lowered one (what is
        called): it frees the heap (what came in is copied on before anything is allocated
        again) and points spilled results at the slot; its post-return frees the heap again."""
        args = " ".join(f"(local.get {k})" for k in range(len(self.core_params)))
        if self.spills:
            body = f"(call $reset) (call $f{i} {args} (i32.const {SLOT})) (i32.const {SLOT})"
        else:
            body = f"(call $reset) (call $f{i} {args})"
        return (f'(func (export "{i}") {_params(self.core_params)} {_results(self.core_results)} {body})\n    '
                f'(func (export "p{i}") {_params(self.core_results)} (call $reset))')


def _params(types: Iterable[str]) -> str:
    return " ".join(f"(param {t})" for t in types)


def _results(types: Iterable[str]) -> str:
    return " ".join(f"(result {t})" for t in types)


_LIBC = f"""(core module $Libc
      (memory (export "memory") 1)
      (global $bump (mut i32) (i32.const {HEAP}))
      (func (export "reset") (global.set $bump (i32.const {HEAP})))
      (func (export "realloc") (param $old i32) (param $osize i32) (param $align i32) (param $size i32) (result i32)
        (local $p i32) (local $end i32) (local $have i32)
        ;; at least 8: a byte list is handed on as a latin1+utf16 string, whose pointer must be even
        (if (i32.lt_u (local.get $align) (i32.const 8)) (then (local.set $align (i32.const 8))))
        (if (i32.and (i32.ne (local.get $old) (i32.const 0)) (i32.le_u (local.get $size) (local.get $osize)))
          (then (return (local.get $old))))
        (if (i32.and (i32.ne (local.get $old) (i32.const 0))
                     (i32.eq (i32.add (local.get $old) (local.get $osize)) (global.get $bump)))
          (then (local.set $p (local.get $old)))
          (else (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                                       (i32.sub (i32.const 0) (local.get $align))))))
        (local.set $end (i32.add (local.get $p) (local.get $size)))
        (if (i32.lt_u (local.get $end) (local.get $p)) (then unreachable))
        (local.set $have (i32.shl (memory.size) (i32.const 16)))
        (if (i32.gt_u (local.get $end) (local.get $have))
          (then (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have))
                                                             (i32.const 65535)) (i32.const 16)))
                            (i32.const -1))
                  (then unreachable))))
        (if (i32.and (i32.ne (local.get $old) (i32.const 0)) (i32.ne (local.get $p) (local.get $old)))
          (then (memory.copy (local.get $p) (local.get $old) (local.get $osize))))
        (global.set $bump (local.get $end))
        (local.get $p)))
    (core instance $libc (instantiate $Libc))"""
_OPTIONS = '(memory (core memory $libc "memory")) (realloc (core func $libc "realloc")) string-encoding=latin1+utf16'


def _nested(named: _Named, fns: list[_Fn], view_in: View, view_out: View) -> str:
    """A nested adapter component: it imports functions ``f<i>`` (typed ``view_in``), and exports
    each as ``x<i>`` (typed ``view_out``) through a trampoline over its own memory."""
    lines = [named.imports(), _LIBC]
    for i, fn in enumerate(fns):
        lines.append(f'(type $ti{i} {fn.func_type(view_in)}) (import "f{i}" (func $f{i} (type $ti{i})))')
        lines.append(f"(core func $l{i} (canon lower (func $f{i}) {_OPTIONS}))")
    code = [fn.lowered_import(i) for i, fn in enumerate(fns)] + [fn.trampoline(i) for i, fn in enumerate(fns)]
    lines.append('(core module $T (import "libc" "reset" (func $reset))\n    ' + "\n    ".join(code) + ")")
    lowered = " ".join(f'(export "{i}" (func $l{i}))' for i in range(len(fns)))
    lines.append(f'(core instance $t (instantiate $T (with "libc" (instance $libc)) (with "f" (instance {lowered}))))')
    for i, fn in enumerate(fns):
        lines.append(f'(type $to{i} {fn.func_type(view_out)})')
        lines.append(f'(func $x{i} (type $to{i}) (canon lift (core func $t "{i}") {_OPTIONS} '
                     f'(post-return (core func $t "p{i}"))))')
        lines.append(f'(export "x{i}" (func $x{i}))')
    return "\n    ".join(lines)


def wrap(wasm: bytes, imports: dict[str, str], exports: dict[str, list[str]]) -> bytes:
    """The outer component around ``wasm``. ``imports``: interface -> the exact name the actor
    imports it by; ``exports``: the exact name of each interface it exports -> its functions."""
    wasi = sorted(base for base in imports if wit.is_wasi(base))
    if wasi:                # WASI's resources (streams, pollables) cannot pass through it
        raise Unsupported(f"it imports WASI ({wasi[0]}, ...)")
    try:
        text = outer_wat(imports, exports)
    except (KeyError, IndexError, TypeError, ValueError) as e:    # a type it has no lowering for
        raise Unsupported(f"a type the adapter does not carry ({type(e).__name__}: {e})") from None
    try:
        outer = wasmtime.wat2wasm(text)
    except wasmtime.WasmtimeError as e:
        raise Unsupported(f"the adapter does not assemble: {str(e).splitlines()[0]}") from None
    return _splice(bytes(outer), wasm)


def outer_wat(imports: dict[str, str], exports: dict[str, list[str]]) -> str:
    """The outer component's text, with an empty placeholder where the actor goes."""
    package = wit.package()
    # the host's functions: every function of each interface the actor imports
    host = [(base, exact, name, _Fn(f)) for base, exact in imports.items() if base != TYPES
            for name, f in package[base].funcs.items()]
    actor = []                                   # the actor's exports it has
    for exact, names in exports.items():
        base = exact.split("@", 1)[0]
        if base not in package:
            raise Unsupported(f"export {exact}")
        actor += [(exact, name, _Fn(package[base].funcs[name])) for name in names]
    # the types each imported interface exports (its own and those of `types`, which any may use)
    bags = {base: {**package[TYPES].types, **package[base].types} for base in imports}
    named = _Named()
    for fn in [f for *_, f in host + actor]:
        for d in (*fn.params, fn.result):
            named.collect(d)
    for types in bags.values():
        for text in types.values():
            named.collect(wit.parse(text))

    parts = ["(component"]
    for base, exact in imports.items():
        if base != TYPES:
            funcs = " ".join(f'(export "{name}" {fn.func_type(host_view)})' for b, _, name, fn in host if b == base)
            parts.append(f'  (import "{exact}" (instance $h_{_id(base)} {funcs}))')
    parts.append("  (component)")                      # the actor: component 0, replaced by _splice
    parts += [f"  (type $t{i} {named.definition(d)})" for i, d in enumerate(named.order)]
    # I: the host's functions, for the actor
    parts.append(f"  (component $I\n    {_nested(named, [fn for *_, fn in host], host_view, named.ref)})")
    for i, (base, _, name, _) in enumerate(host):
        parts.append(f'  (alias export $h_{_id(base)} "{name}" (func $h{i}))')
    args = " ".join(f'(with "f{i}" (func $h{i}))' for i in range(len(host)))
    parts.append(f"  (instance $i (instantiate $I {named.args()} {args}))")
    # the actor, given each interface it imports as a bag of I's functions and the types
    aliases = itertools.count()
    args = ""
    for base, exact in imports.items():
        items = []
        for tname, text in bags[base].items():
            d = wit.parse(text)
            if d[0] in ("record", "enum"):
                ref = f"$t{named.order.index(d)}"
            else:
                ref = f"$a{next(aliases)}"
                parts.append(f"  (type {ref} {named.ref(d)})")
            items.append(f'(export "{tname}" (type {ref}))')
        for i, (b, _, name, _) in enumerate(host):
            if b == base:
                parts.append(f'  (alias export $i "x{i}" (func $ix{i}))')
                items.append(f'(export "{name}" (func $ix{i}))')
        parts.append(f"  (instance $b_{_id(base)} {' '.join(items)})")
        args += f' (with "{exact}" (instance $b_{_id(base)}))'
    parts.append(f"  (instance $a (instantiate 0{args}))")
    # E: the actor's exports, for the host
    for exact in exports:
        parts.append(f'  (alias export $a "{exact}" (instance $ae_{_id(exact)}))')
    for i, (exact, name, _) in enumerate(actor):
        parts.append(f'  (alias export $ae_{_id(exact)} "{name}" (func $af{i}))')
    parts.append(f"  (component $E\n    {_nested(named, [fn for *_, fn in actor], named.ref, host_view)})")
    args = " ".join(f'(with "f{i}" (func $af{i}))' for i in range(len(actor)))
    parts.append(f"  (instance $e (instantiate $E {named.args()} {args}))")
    for exact in exports:
        items = []
        for i, (e, name, _) in enumerate(actor):
            if e == exact:
                parts.append(f'  (alias export $e "x{i}" (func $ex{i}))')
                items.append(f'(export "{name}" (func $ex{i}))')
        parts.append(f'  (instance $o_{_id(exact)} {" ".join(items)})')
        parts.append(f'  (export "{exact}" (instance $o_{_id(exact)}))')
    parts.append(")")
    return "\n".join(parts)


def _id(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _splice(outer: bytes, actor: bytes) -> bytes:
    """``outer`` with its placeholder component section holding ``actor``."""
    section = b"\x04" + bytes([len(PLACEHOLDER)]) + PLACEHOLDER
    if outer.count(section) != 1:
        raise Unsupported("cannot find the placeholder in the assembled adapter")
    return outer.replace(section, b"\x04" + _leb128(len(actor)) + actor)


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)

"""Loading an actor's component: compile once, cache, check it against what its manifest grants.

Compiled artifacts live in ``$THEATER_HOME/cache/<wasmtime version>/<flavour>/<sha256>.a<N>.cwasm``
(a serialized component only loads into an engine with the same settings, so fuel on/off is
part of the key; N is the byte adapter's version, ``ADAPTER``). Loading from the cache is an
mmap (``deserialize_file``), about 1 ms instead of several ms to seconds of compiling.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import orjson
import wasmtime
from wasmtime import component as wc

from theater import grants
from theater.errors import ComponentError
from theater.manifest import Manifest
from theater.paths import write_atomically

from . import adapter, wit
from .wit import PACKAGE, render_func, signatures

WASMTIME_VERSION = metadata.version("wasmtime")
# Part of every cache key: what is cached is the adapter's output, and its shape says so.
ADAPTER = 1
log = logging.getLogger("theater.worker")
TYPES_INTERFACE = f"{PACKAGE}/types"
ACTOR_INTERFACE = f"{PACKAGE}/actor"


def make_engine(fuel: bool) -> wasmtime.Engine:
    cfg = wasmtime.Config()
    cfg.epoch_interruption = True           # every call has a wall-clock deadline
    cfg.consume_fuel = fuel                 # deterministic budgets, only when a manifest asks
    cfg.cranelift_nan_canonicalization = True   # the same NaN bits on every run, for replay
    return wasmtime.Engine(cfg)


def unversioned(name: str) -> str:
    """``theater:simple/runtime@0.2.0`` -> ``theater:simple/runtime``."""
    return name.split("@", 1)[0]


@dataclass
class Shape:
    """What a component imports and exports, checked against the WIT package (not yet against a
    manifest's grants). Checking renders every function type through ctypes, so it is done once
    per component and kept beside its compiled form."""

    imports: dict[str, str]            # interface base name -> the exact name the component uses
    exports: dict[str, list[str]]      # exact export name -> functions present
    export_names: dict[str, str]       # interface base name -> exact export name
    adapted: bool = False              # it runs inside the byte adapter (worker.adapter)

    def signature(self, interface: str, fn: str) -> wit.Func | None:
        """What the codec for an export or import of it needs: its WIT signature if it runs in
        the adapter, else nothing (the component's own types say it all)."""
        return wit.package()[interface].funcs[fn] if self.adapted else None

    def granted(self, manifest: Manifest) -> None:
        """Refuses an import the manifest does not grant, naming the interface and the fix."""
        for base, name in self.imports.items():
            if base != TYPES_INTERFACE and base not in manifest.granted_imports:
                spec = grants.for_interface(base)
                raise ComponentError(f"component imports {name}, which the manifest does not grant "
                                     f"(add [[handler]] type = \"{spec.type if spec else '?'}\" to {manifest.source})")


def load(engine: wasmtime.Engine, cache_dir: Path, wasm_path: Path, sha256: str,
         fuel: bool) -> tuple[wc.Component, Shape, bool]:
    """The component to run, its checked shape, and whether this load compiled it. What runs is
    the actor inside its adapter (``worker.adapter``: bytes cross in bulk; ``shape.adapted``),
    or, if the adapter cannot wrap it, the actor as it is."""
    version = cache_dir / WASMTIME_VERSION
    shape_file = version / f"{sha256}.shape{ADAPTER}.json"
    cached = version / ("fuel" if fuel else "epoch") / f"{sha256}.a{ADAPTER}.cwasm"
    shape = _read_shape(shape_file)
    if shape is not None and cached.exists():
        try:
            return wc.Component.deserialize_file(engine, str(cached)), shape, False
        except wasmtime.WasmtimeError:
            cached.unlink(missing_ok=True)     # stale or damaged: compile again
    wasm = _read_wasm(wasm_path, sha256)
    plain = None
    if shape is None:
        plain = _compile(engine, wasm)
        shape = Shape(_check_imports(engine, plain), *_check_exports(engine, plain))
        shape.adapted = True
    component = None
    if shape.adapted:
        try:
            component = _compile(engine, adapter.wrap(wasm, shape.imports, shape.exports))
        except (adapter.Unsupported, ComponentError) as e:
            log.warning("component %s runs without the byte adapter (%s): byte lists cross one C value "
                        "per byte", sha256[:12], e)
            shape.adapted = False
    if component is None:
        component = plain or _compile(engine, wasm)
    write_atomically(shape_file, orjson.dumps(asdict(shape)))
    write_atomically(cached, component.serialize())
    return component, shape, True


def _read_shape(path: Path) -> Shape | None:
    try:
        return Shape(**orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError, TypeError):
        return None


def _read_wasm(path: Path, sha256: str) -> bytes:
    """The component's binary (WAT text is assembled)."""
    try:
        wasm = path.read_bytes()
    except OSError as e:
        raise ComponentError(f"component {sha256[:12]} is missing from {path.parent}: {e.strerror}") from None
    if not wasm.startswith(b"\x00asm"):
        try:
            wasm = bytes(wasmtime.wat2wasm(wasm.decode()))
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as e:
            raise ComponentError(f"{path} is neither a WebAssembly component nor WAT: {e}") from None
    return wasm


def _compile(engine: wasmtime.Engine, wasm: bytes) -> wc.Component:
    try:
        return wc.Component(engine, wasm)
    except wasmtime.WasmtimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid"
        raise ComponentError(f"not a valid WebAssembly component: {first}") from None


def _check_imports(engine: wasmtime.Engine, component: wc.Component) -> dict[str, str]:
    sigs = signatures()
    found: dict[str, str] = {}
    for name, ext in component.type.imports(engine).items():
        base = unversioned(name)
        if base == TYPES_INTERFACE:
            found[base] = name
            continue
        if grants.for_interface(base) is None:
            provided = sorted(i for spec in grants.SPECS.values() for i in spec.imports)
            raise ComponentError(f"component imports {name}, which Theater does not provide "
                                 f"(it provides {', '.join(provided)})")
        _check_funcs(engine, name, ext, sigs[base], "imports")
        found[base] = name
    return found


def _check_exports(engine: wasmtime.Engine, component: wc.Component) -> tuple[dict[str, list[str]], dict[str, str]]:
    sigs = signatures()
    exports: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, ext in component.type.exports(engine).items():
        base = unversioned(name)
        if base not in sigs:
            continue                          # exports nobody will call are harmless
        exports[name] = sorted(_check_funcs(engine, name, ext, sigs[base], "exports"))
        names[base] = name
    if ACTOR_INTERFACE not in names or "init" not in exports[names[ACTOR_INTERFACE]]:
        raise ComponentError(f"component does not export {ACTOR_INTERFACE} with an init function "
                             f"(every actor must)")
    return exports, names


def _check_funcs(engine: wasmtime.Engine, name: str, ext: wc.ComponentExtern, expected: dict[str, str],
                 verb: str) -> set[str]:
    ty = ext.ty
    if not isinstance(ty, wc.ComponentInstanceType):
        raise ComponentError(f"component {verb} {name} as something other than an interface instance")
    present = set()
    for fname, fext in ty.exports(engine).items():
        fty = fext.ty
        if not isinstance(fty, wc.FuncType):
            continue
        if fname not in expected:
            raise ComponentError(f"component {verb} {name}.{fname}, which is not part of {unversioned(name)} "
                                 f"(it has {', '.join(expected)})")
        actual = render_func(fty)
        if actual != expected[fname]:
            raise ComponentError(f"component {verb} {name}.{fname} with the wrong type: "
                                 f"expected {expected[fname]}, found {actual}")
        present.add(fname)
    return present

"""Loading an actor's component: compile once, cache, check it against what its manifest grants.

Compiled artifacts live in ``$THEATER_HOME/cache/<wasmtime version>/<flavour>/<sha256>.cwasm``
(a serialized component only loads into an engine with the same settings, so fuel on/off
is part of the key). Loading from the cache is an mmap (``deserialize_file``), about 1 ms
instead of several ms to seconds of compiling.
"""

from __future__ import annotations

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

from . import wasi
from .wit import PACKAGE, render_func, signatures

WASMTIME_VERSION = metadata.version("wasmtime")
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

    def granted(self, manifest: Manifest) -> None:
        """Refuses an import the manifest does not grant, naming the interface and the fix."""
        for base, name in self.imports.items():
            if _needs_grant(base) and base not in manifest.granted_imports:
                spec = grants.for_interface(base)
                raise ComponentError(f"component imports {name}, which the manifest does not grant "
                                     f"(add [[handler]] type = \"{spec.type if spec else '?'}\" to {manifest.source})")


def load(engine: wasmtime.Engine, cache_dir: Path, wasm_path: Path, sha256: str,
         fuel: bool) -> tuple[wc.Component, Shape, bool]:
    """The compiled component, its checked shape, and whether this load compiled it."""
    component, compiled = compile_cached(engine, cache_dir, wasm_path, sha256, fuel)
    shape_file = cache_dir / WASMTIME_VERSION / f"{sha256}.shape.json"
    try:
        shape = Shape(**orjson.loads(shape_file.read_bytes()))
    except (OSError, orjson.JSONDecodeError, TypeError):
        shape = Shape(_check_imports(engine, component), *_check_exports(engine, component))
        write_atomically(shape_file, orjson.dumps(asdict(shape)))
    return component, shape, compiled


def compile_cached(engine: wasmtime.Engine, cache_dir: Path, wasm_path: Path, sha256: str,
                   fuel: bool) -> tuple[wc.Component, bool]:
    """The component at ``wasm_path`` (binary, or WAT text), from the cache when it is there."""
    flavour = "fuel" if fuel else "epoch"
    cached = cache_dir / WASMTIME_VERSION / flavour / f"{sha256}.cwasm"
    if cached.exists():
        try:
            return wc.Component.deserialize_file(engine, str(cached)), False
        except wasmtime.WasmtimeError:
            cached.unlink(missing_ok=True)     # stale or damaged: compile again
    try:
        wasm = wasm_path.read_bytes()
    except OSError as e:
        raise ComponentError(f"component {sha256[:12]} is missing from {wasm_path.parent}: {e.strerror}") from None
    if not wasm.startswith(b"\x00asm"):
        try:
            wasm = wasmtime.wat2wasm(wasm.decode())
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as e:
            raise ComponentError(f"{wasm_path} is neither a WebAssembly component nor WAT: {e}") from None
    try:
        component = wc.Component(engine, wasm)
    except wasmtime.WasmtimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid"
        raise ComponentError(f"not a valid WebAssembly component: {first}") from None
    write_atomically(cached, component.serialize())
    return component, True


def _check_imports(engine: wasmtime.Engine, component: wc.Component) -> dict[str, str]:
    sigs = signatures()
    found: dict[str, str] = {}
    for name, ext in component.type.imports(engine).items():
        base = unversioned(name)
        if wasi.is_wasi(base):
            why = wasi.unprovided(name)
            if why is not None:
                raise ComponentError(f"component imports {name}, which Theater does not provide ({why})")
            found[base] = name
            continue
        if sigs.get(base) == {}:              # an interface of types only (types, http-types)
            _check_funcs(engine, name, ext, {}, "imports")
            found[base] = name
            continue
        if grants.for_interface(base) is None:
            provided = sorted(i for spec in grants.SPECS.values() for i in spec.imports)
            raise ComponentError(f"component imports {name}, which Theater does not provide "
                                 f"(it provides {', '.join(provided)})")
        _check_funcs(engine, name, ext, sigs[base], "imports")
        found[base] = name
    return found


def _needs_grant(base: str) -> bool:
    """WASI needs no grant (what it reaches is what the handlers grant), nor do interfaces of types."""
    return not wasi.is_wasi(base) and signatures().get(base) != {}


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

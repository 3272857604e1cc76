"""An actor's component: compiled once, cached, checked against what its manifest grants.

Compiled artifacts live in ``$THEATER_HOME/cache/<wasmtime version>/<flavour>/<sha256>.a<N>.cwasm``
(a serialized component only loads into an engine with the same settings, so fuel on/off is
part of the key; N is the byte adapter's version), its checked shape beside them. What is
compiled is the actor inside the byte adapter (``worker.adapter``: bytes cross in bulk), or the
actor as it is when the adapter cannot wrap it (``Shape.adapted`` says which). Compiling
(``compiled_bytes``) is done by ``python -m worker compile``, a process of its own that the server
(and the replayer) starts and no actor is charged for (Cranelift needs ~400 MiB for an 18 MB
component); a worker only loads (``load_compiled``: an mmap, about 1 ms).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
import wasmtime
from wasmtime import component as wc

from theater import grants
from theater._wasm_errors import compile_error, wat_error
from theater.errors import ComponentError, TheaterError
from theater.manifest import Manifest

from . import adapter, wit
from .wit import PACKAGE, is_wasi, render_func, signatures, wasi_unprovided

ACTOR_INTERFACE = f"{PACKAGE}/actor"

log = logging.getLogger("theater.worker")


def make_engine(fuel: bool, threads: bool = True) -> wasmtime.Engine:
    """``threads=False``: it compiles on the calling thread (a process that forks afterwards must
    not have wasmtime's compile thread pool: its children deadlock). Components it compiles load
    into the other kind too."""
    cfg = wasmtime.Config()
    cfg.epoch_interruption = True           # every call has a wall-clock deadline
    cfg.consume_fuel = fuel                 # deterministic budgets, only when a manifest asks
    cfg.cranelift_nan_canonicalization = True   # the same NaN bits on every run, for replay
    cfg.parallel_compilation = threads
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
    # exact import name -> the functions the compiled component imports from it (the adapter
    # imports whole interfaces); WASI's are linked by worker.wasi
    imported: dict[str, list[str]] = field(default_factory=dict)

    def signature(self, interface: str, fn: str) -> wit.Func | None:
        """What the codec for an export or import of it needs: its WIT signature if it runs in
        the adapter, else nothing (the component's own types say it all)."""
        return wit.package()[interface].funcs[fn] if self.adapted else None

    def granted(self, manifest: Manifest) -> None:
        """Refuses an import the manifest does not grant, naming the interface and the fix."""
        for base, name in self.imports.items():
            if _needs_grant(base) and base not in manifest.granted_imports:
                spec = grants.for_interface(base)
                raise ComponentError(f"component imports {name}, which the manifest does not grant "
                                     f"(add [[handler]] type = \"{spec.type if spec else '?'}\" to {manifest.source})")


def compiled_bytes(engine: wasmtime.Engine, wasm_path: Path, digest: str) -> tuple[bytes, bytes]:
    """The component at ``wasm_path`` (binary, or WAT text) compiled, and its shape, as the cache
    holds them under ``digest`` (``python -m worker compile`` writes them); ComponentError for one
    that does not check, or whose bytes as read here are not ``digest``'s: the cache's key was
    worked out by another process, earlier, and a file changed in between would put one
    component's code under another's name, loaded for it from then on."""
    component, shape = build(engine, _read_wasm(wasm_path, digest), wasm_path.stem[:12])
    return component.serialize(), orjson.dumps(asdict(shape))


def build(engine: wasmtime.Engine, wasm: bytes, name: str) -> tuple[wc.Component, Shape]:
    """Compiles a component inside its byte adapter when it can be wrapped, and checks its shape."""
    plain = _compile(engine, wasm)
    shape = Shape(_check_imports(engine, plain), *_check_exports(engine, plain), adapted=True)
    try:
        component = _compile(engine, adapter.wrap(wasm, shape.imports, shape.exports))
    except (adapter.Unsupported, ComponentError) as e:
        log.warning("component %s runs without the byte adapter (%s): byte lists cross one C value per byte",
                    name, e)
        shape.adapted = False
        component = plain
    shape.imported = _imported(engine, component, shape.imports)
    return component, shape


def load_compiled(engine: wasmtime.Engine, cwasm: Path, shape_file: Path) -> tuple[wc.Component, Shape]:
    """What a worker does: deserialize (an mmap, ~1 ms) and read the shape. Compiling is the
    server's job, done before it forks the worker, so a missing compiled form is a bug."""
    if not cwasm.exists():
        raise TheaterError(f"internal error: no compiled form of the component at {cwasm} (the server "
                           f"compiles every component before it starts a worker for it)")
    try:
        component = wc.Component.deserialize_file(engine, str(cwasm))
        shape = Shape(**orjson.loads(shape_file.read_bytes()))
    except (wasmtime.WasmtimeError, OSError, orjson.JSONDecodeError, TypeError) as e:
        try:
            cwasm.unlink(missing_ok=True)      # stale or damaged: the next start compiles it again
            then = "it was removed and is compiled again at the next start"
        except OSError:                        # under --user the cache is the server's alone
            then = "remove it, and the next start compiles it again"
        raise TheaterError(f"the compiled component at {cwasm} does not load ({_first_line(e)}); {then}") from None
    return component, shape


def _read_wasm(path: Path, digest: str) -> bytes:
    """The component's binary (WAT text is assembled), if its bytes are ``digest``'s."""
    try:
        wasm = path.read_bytes()
    except OSError as e:
        raise ComponentError(f"component {path.stem[:12]} is missing from {path.parent}: {e.strerror}") from None
    if hashlib.sha256(wasm).hexdigest() != digest:
        raise ComponentError(f"{path} changed since it was named (its SHA-256 is no longer {digest[:12]}): "
                             "not compiled")
    if not wasm.startswith(b"\x00asm"):
        try:
            wasm = bytes(wasmtime.wat2wasm(wasm.decode()))
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as e:
            raise ComponentError(f"{path} is neither a WebAssembly component nor WAT: "
                                 f"{wat_error(str(e), str(path))}") from None
    return wasm


def _compile(engine: wasmtime.Engine, wasm: bytes) -> wc.Component:
    try:
        return wc.Component(engine, wasm)
    except wasmtime.WasmtimeError as e:
        raise ComponentError(f"not a valid WebAssembly component: {compile_error(str(e))}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check_imports(engine: wasmtime.Engine, component: wc.Component) -> dict[str, str]:
    sigs = signatures()
    found: dict[str, str] = {}
    for name, ext in component.type.imports(engine).items():
        base = unversioned(name)
        if is_wasi(base):
            why = wasi_unprovided(name)
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


def _imported(engine: wasmtime.Engine, component: wc.Component, imports: dict[str, str]) -> dict[str, list[str]]:
    types = component.type.imports(engine)
    return {exact: sorted(fn for fn, ext in types[exact].ty.exports(engine).items() if isinstance(ext.ty, wc.FuncType))
            for base, exact in imports.items() if not is_wasi(base) and exact in types}


def _needs_grant(base: str) -> bool:
    """WASI needs no grant (what it reaches is what the handlers grant), nor do interfaces of types."""
    return not is_wasi(base) and signatures().get(base) != {}


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

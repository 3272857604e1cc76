"""The components a replay runs: each found in the cache or compiled before the replayer
confines itself, kept in memory, and loaded from there by each incarnation that runs it.

Compiling reads the component and writes the cache, native code every worker trusts: the
replayer does it first, for every incarnation of the record, then confines itself
(``worker.replaysandbox``), and from then on reads and writes no file. A component the cache
lacks is compiled by the server's compile step, in a process of its own with every core
(``worker.replaycompile``): the replayer itself must start no thread before it confines itself.
Compiling is held to ``[compile] memory`` and ``[compile] timeout``, as the server's compile
step is; loading a compiled form in the replayer, to ``[compile] memory`` beyond what it held.
What goes wrong with a component (missing, not valid, past a limit) is raised where the replay
reaches the first incarnation that runs it, as when it was compiled there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime import component as wc

from theater.errors import TheaterError
from theater.events import Event, decode_data
from theater.manifest import Limits
from theater.paths import compiled_path, shape_path

from . import component
from .component import Shape
from .replaycompile import AtCompileLimit, Compiler, trusted
from .replaylimits import ENOMEM, ProcessData, of_record
from .replayreport import AtLimit

DIGEST = re.compile(r"[0-9a-f]{64}")     # a component is named by its SHA-256: never a path


class Components:
    def __init__(self, events: list[Event], find: Callable[[str], tuple[Path, str, str]], compiler: Compiler,
                 defaults: Limits, data: ProcessData) -> None:
        self.data = data
        self.compiler = compiler
        # (SHA-256, fuel) -> the compiled component and its shape, or why there is none
        self.compiled: dict[tuple[str, bool], tuple[bytes | bytearray, Shape] | Exception] = {}
        for ev in events:
            if ev.type != "lifecycle/start":
                continue
            try:
                info = decode_data(ev.data)
                sha, fuel = info["component"], of_record(info, defaults, data.ceiling).fuel > 0
            except Exception:       # (said by the incarnation, as the replay reaches it)
                continue
            if isinstance(sha, str) and DIGEST.fullmatch(sha) and (sha, fuel) not in self.compiled:
                self.compiled[sha, fuel] = self._compiled(*find(sha), fuel)

    def _compiled(self, path: Path, digest: str, key: str, fuel: bool) -> tuple[bytes | bytearray, Shape] | Exception:
        """The cache's compiled form (one that does not load is removed) if it can be trusted,
        else one compiled now."""
        cache = self.compiler.home.cache
        cwasm, shape_file = compiled_path(cache, key, fuel), shape_path(cache, key)
        if cwasm.exists() and trusted(cwasm) and trusted(shape_file):
            self._allow()
            try:
                comp, shape = component.load_compiled(component.make_engine(fuel, threads=False), cwasm, shape_file)
                return comp.serialize(), shape
            except TheaterError:
                pass                            # damaged, and removed: compile again
            except MemoryError:
                return AtCompileLimit(self.data.kind, self.data.says())
            finally:
                self.data.release()
        try:
            return self.compiler.compile(path, digest, key, fuel)
        except (AtCompileLimit, TheaterError) as e:
            return e

    def load(self, sha: str, fuel: bool, here: int) -> tuple[wasmtime.Engine, wc.Component, Shape]:
        """The component of the incarnation that starts at event ``here``, in an engine of its own
        (made within ``[compile] memory``), and its shape."""
        compiled = self.compiled[sha, fuel]
        if isinstance(compiled, AtCompileLimit):
            raise AtLimit(here, *compiled.args)
        if isinstance(compiled, Exception):
            raise compiled
        serialized, shape = compiled
        engine = component.make_engine(fuel, threads=False)        # (it compiles nothing)
        self._allow()
        try:
            return engine, wc.Component.deserialize(engine, serialized), shape
        except wasmtime.WasmtimeError as e:
            if ENOMEM in str(e) or self.data.at_limit():
                raise AtLimit(here, self.data.kind, self.data.says()) from None
            raise TheaterError(f"internal error: the component compiled for this replay does not load: {e}") from None

    def _allow(self) -> None:
        self.data.allow(self.compiler.limits.memory, "compile_memory", "compile memory limit ([compile] memory)")

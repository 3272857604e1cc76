"""The components a replay runs: each compiled (or found in the cache) before the replayer
confines itself, kept in memory, and loaded from there by each incarnation that runs it.

Compiling reads the component and writes the cache, native code every worker trusts: the
replayer does it first, for every incarnation of the record, then confines itself
(``worker.replaysandbox``), and from then on reads and writes no file. It compiles on one
thread (an engine without wasmtime's compile threads): Landlock binds no thread started before
it. Compiling is held to ``[compile] memory``, as the server's compile step is. What goes
wrong with a component (missing, not valid, past that memory) is raised where the replay
reaches the first incarnation that runs it, as when it was compiled there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime import component as wc

from theater.errors import ComponentError, TheaterError
from theater.events import Event, decode_data
from theater.manifest import Limits

from . import component
from .component import Shape
from .replaylimits import ENOMEM, ProcessData, of_record
from .replayreport import AtLimit

DIGEST = re.compile(r"[0-9a-f]{64}")     # a component is named by its SHA-256: never a path


class _NoRoom(Exception):
    """A component not compiled within the compile memory: (which limit, what it says)."""


class Components:
    def __init__(self, events: list[Event], find: Callable[[str], tuple[Path, str]], cache: Path,
                 defaults: Limits, data: ProcessData, compile_memory: int) -> None:
        self.data = data
        self.compile_memory = compile_memory
        # (SHA-256, fuel) -> the compiled component and its shape, or why there is none
        self.compiled: dict[tuple[str, bool], tuple[bytearray, Shape] | Exception] = {}
        for ev in events:
            if ev.type != "lifecycle/start":
                continue
            try:
                info = decode_data(ev.data)
                sha, fuel = info["component"], of_record(info, defaults, data.ceiling).fuel > 0
            except Exception:       # (said by the incarnation, as the replay reaches it)
                continue
            if isinstance(sha, str) and DIGEST.fullmatch(sha) and (sha, fuel) not in self.compiled:
                self.compiled[sha, fuel] = self._compile(*find(sha), cache, fuel)
        data.release()

    def _compile(self, path: Path, key: str, cache: Path, fuel: bool) -> tuple[bytearray, Shape] | Exception:
        self._allow()
        try:
            comp, shape, _ = component.load(component.make_engine(fuel, threads=False), cache, path, key, fuel)
            return comp.serialize(), shape
        except ComponentError as e:          # "not a valid component: Cannot allocate memory", at the limit
            return _NoRoom(self.data.kind, self.data.says()) if ENOMEM in e.message or self.data.at_limit() else e
        except MemoryError:
            self.data.release()
            return _NoRoom(self.data.kind, self.data.says())

    def load(self, sha: str, fuel: bool, here: int) -> tuple[wasmtime.Engine, wc.Component, Shape]:
        """The component of the incarnation that starts at event ``here``, in an engine of its own
        (made within ``[compile] memory``), and its shape."""
        compiled = self.compiled[sha, fuel]
        if isinstance(compiled, _NoRoom):
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
        self.data.allow(self.compile_memory, "compile_memory", "compile memory limit ([compile] memory)")

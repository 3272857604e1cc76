"""Replay: run an actor's recorded calls again and compare what it does with the record.

Each incarnation in the chain (from a ``lifecycle/start``, which records the component
and the starting state) is instantiated afresh; every recorded export call is made again
with its recorded parameters; every host call the actor makes is answered with the
recorded output of the next host-call event, after checking that it is the same function
with the same inputs. Each event the actor produces is encoded as the live actor would
(``records``) and hashed after the recorded previous event: the first hash that differs is
the divergence. Events the actor does not produce (lifecycle, limits) are taken as
recorded. A call whose record ends without its outcome (wall-clock time cut it short, or
its worker died in it: the next event is a ``lifecycle/exit``, or the chain ends) is replayed
as far as its record goes, every event compared; then it is stopped and the incarnation's
replay ends there: the rest is not reproducible, and not a divergence.

Each incarnation is held to the memory limits its record says the live actor had (see
``replaylimits``); a replay that fails at one of them reports that limit, not a divergence.

The replayer reads everything first: the chain, and each component its incarnations run
(``replaycomponents``). Then it confines itself (``replay``'s ``confine``:
``worker.replaysandbox``), and only then runs the actor's code.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import component as wc

from theater import grants
from theater.bodies import body_of
from theater.config import ServerConfig
from theater.events import Event, encode_data, event_hash
from theater.manifest import Limits
from theater.paths import Home

from . import component, handlers, records, replaylimits, wasi, wit
from .crossing import Export, raise_host_exception
from .replaycompile import Compiler
from .replaycomponents import DIGEST, Components
from .replaylimits import ENOMEM, Alarm, Held, ProcessData
from .replayreport import AtLimit, Diverged, Report, recorded, short

# Recorded exits that depended on wall-clock time or outside intervention.
NOT_REPRODUCIBLE = ("timeout", "stopped", "host", "memory", "oom")
# A replayed call is stopped (the record had it finish, so it diverged) once it has run this
# many times as long as it took when recorded, and at least CALL_LIMIT_MIN seconds.
CALL_LIMIT_FACTOR = 20
CALL_LIMIT_MIN = 5.0

_UNKNOWN = object()


class _RecordEnds(Exception):
    """Raised where a replayed call goes past the end of a record that has no outcome for it."""


def _output(value: Any) -> Any:
    """A recorded output in the codec's shape: {"ok": v} / {"err": e} become result tuples."""
    if isinstance(value, dict) and len(value) == 1 and ("ok" in value or "err" in value):
        (tag, payload), = value.items()
        return (tag, payload)
    return value


def _params(value: Any) -> Any:
    """Recorded parameters back in the codec's shape (tuples for WIT tuples)."""
    return tuple(_params(v) for v in value) if isinstance(value, list) else value


class Replayer:
    def __init__(self, events: list[Event], find: Callable[[str], tuple[Path, str, str]], compiler: Compiler,
                 defaults: Limits) -> None:
        """Reads all the replay needs (``find``: a recorded SHA-256 -> its file, the file's
        SHA-256 and its cache key)."""
        self.events = events
        self.defaults = defaults           # the limits of an incarnation whose record does not say
        self.data = ProcessData()
        self.held: Held | None = None      # the running incarnation's limits
        self.cursor = 0
        self.calls = 0
        self.incarnations = 0
        self.reproduced = 0
        self.output: wasi.Output | None = None
        self.exports: dict[str, Export] = {}
        self.end = len(events)             # where the record of what runs now ends
        self.cut: str | None = None        # why that record ends before the call's outcome
        self.last_state: Any = _UNKNOWN    # what the last call that set a state left: a resume starts there
        self.unlinked = self._unlinked()         # (then the replay ends at once: nothing to compile)
        self.components = Components([] if self.unlinked else events, find, compiler, defaults, self.data)
        wit.package(), handlers.load()     # read now, not once confined

    def run(self) -> Report:
        """The replay, once everything is read (``__init__``); it runs the actor's code."""
        report = Report(self.events[0].actor_id if self.events else "", len(self.events), 0, 0)
        self.alarm = Alarm()
        i = 0
        try:
            if self.unlinked is not None:
                raise self.unlinked
            while i < len(self.events):
                if self.events[i].type == "lifecycle/start":
                    i, cut = self._incarnation(i)
                    if cut is not None:
                        report.cut.append(cut)
                else:
                    i += 1
        except Diverged as d:
            self.data.release()
            limit = replaylimits.reached(self.held, self.data)
            if limit is None:
                report.divergence = d
            else:
                report.limit = (d.seq, limit[0], f"{limit[1]}; then {d.why}")
        except MemoryError:
            self.data.release()
            report.limit = (self._here(), self.data.kind, self.data.says())
        except AtLimit as a:
            report.limit = a.args
        finally:
            self.alarm.disarm()
            # a store with WASI output callbacks must go before the interpreter exits (wasmtime
            # panics otherwise): drop the last incarnation's store and exports now
            self.exports = {}
            gc.collect()
            self.data.release()
        report.calls, report.incarnations, report.reproduced = self.calls, self.incarnations, self.reproduced
        return report

    def _here(self) -> int:
        return self.events[min(self.cursor, len(self.events) - 1)].seq

    def _unlinked(self) -> Diverged | None:
        """The first event that does not hash to its recorded hash, after the one before it: the
        records a replay takes without making them again (each start's state and component)
        cannot have been edited either. (Who signed them is ``theater verify``'s to check.)"""
        events = self.events
        for i, ev in enumerate(events):
            parent = events[i - 1].hash if i else ev.parent
            if (i and ev.seq != events[i - 1].seq + 1) or \
                    event_hash(ev.actor_id, ev.seq, parent, ev.type, ev.data) != ev.hash:
                return Diverged(ev.seq, "the record's event is not the one its hash says, after the one before it "
                                        "(edited? `theater verify` names what)")
        return None

    # ---- one incarnation ------------------------------------------------------------------

    def _incarnation(self, start: int) -> tuple[int, tuple[int, str] | None]:
        self.incarnations += 1
        self.end, self.cut, self.held = len(self.events), None, None
        info = recorded(self.events[start])
        here = self.events[start].seq
        if not (isinstance(info.get("component"), str) and DIGEST.fullmatch(info["component"])):
            raise Diverged(here, f"the record names its component {short(info.get('component'))}, not by its SHA-256")
        if info.get("mode") == "resume" and self.last_state is not _UNKNOWN and info.get("state") != self.last_state:
            raise Diverged(here, f"the incarnation resumes from the state {short(info.get('state'))}; the last call "
                                 f"that set one left {short(self.last_state)}")
        engine, comp, held = self._load(info, here)
        linker = wc.Linker(engine)
        handlers.link(linker, engine, comp, self.shape, self._feeder)
        self.output = wasi.link(linker, engine, comp, self.shape.imports, self._feeder)
        store = wasmtime.Store(engine)
        if self.output is not None:
            self.output.attach(store)
        store.set_limits(memory_size=held.memory)
        if held.fuel:
            store.set_fuel(held.fuel)       # instantiation runs wasm too, as it did live
        store.set_epoch_deadline(1)
        # host calls made while instantiating (WASI's set-up reads the environment) are
        # recorded just before lifecycle/start
        self.cursor = self._instantiated_from(start)
        overran = threading.Event()         # a start function that never ends is stopped, as a call is
        self.alarm.arm(CALL_LIMIT_MIN, lambda: (overran.set(), engine.increment_epoch()))
        try:
            instance = linker.instantiate(store, comp)
        except wasmtime.WasmtimeError as e:
            raise_host_exception()          # a divergence found by a feeder while instantiating
            if overran.is_set():
                raise Diverged(here, f"the component's instantiation runs past {CALL_LIMIT_MIN:g}s") from None
            if "exceeds memory limits" in str(e):
                raise AtLimit(here, "memory", f"the component needs more linear memory than its limit "
                                               f"({held.memory} bytes; {held.source})") from None
            if ENOMEM in str(e) or self.data.at_limit():
                raise AtLimit(here, self.data.kind, self.data.says()) from None
            raise
        finally:
            self.alarm.disarm()
        linker.close()
        self._drain_output()                # written while instantiating, if anything was
        if self.cursor < start:
            ev = self.events[self.cursor]
            raise Diverged(ev.seq, f"the record has {ev.type} while the component was instantiated; "
                                   f"the replay's instantiation did not make it")
        self.engine = engine
        state: bytes | None = info.get("state")
        i = start + 1
        while i < len(self.events) and self.events[i].type != "lifecycle/start":
            ev = self.events[i]
            if ev.type != "wasm":
                i += 1
                continue
            body = recorded(ev, "event")
            if body.get("event") != "call":
                raise Diverged(ev.seq, f"a recorded {body.get('event')} without its call")
            try:
                i, state = self._call(i, body, instance, store, state)
            except _RecordEnds as end:           # interrupted in the record: not reproducible
                return self._next_start(i), (ev.seq, str(end))
        return i, None

    def _load(self, info: dict[str, Any], here: int) -> tuple[wasmtime.Engine, wc.Component, Held]:
        """The incarnation's engine, component (``replaycomponents``) and limits, which hold this
        process from here on."""
        try:
            held = replaylimits.of_record(info, self.defaults, self.data.ceiling)
        except ValueError as e:
            raise Diverged(here, str(e)) from None
        self.exports, self.output = {}, None
        gc.collect()                       # the last incarnation's memories go before this one is counted
        engine, comp, self.shape = self.components.load(info["component"], held.fuel > 0, here)
        self.data.allow(held.process_memory, "process_memory", f"process memory limit ({held.source})")
        self.held = held
        return engine, comp, held

    def _instantiated_from(self, start: int) -> int:
        """Where the events of the instantiation before the lifecycle/start at ``start`` begin:
        after the previous incarnation's last call (or lifecycle) event."""
        i = start
        while i > 0 and self.events[i - 1].type != "wasm" and not self.events[i - 1].type.startswith("lifecycle/"):
            i -= 1
        return i

    def _next_start(self, i: int) -> int:
        while i < len(self.events) and self.events[i].type != "lifecycle/start":
            i += 1
        return i

    def _call(self, i: int, body: dict[str, Any], instance: wc.Instance, store: wasmtime.Store,
              state: bytes | None) -> tuple[int, bytes | None]:
        """Makes the call recorded at ``i`` again; raises _RecordEnds where a record without
        its outcome is exhausted (at once if it holds nothing the actor did in the call)."""
        function = body["function"]
        interface, fn = function.rsplit(".", 1)
        params = _params(body["params"])
        self._produce(i, "wasm", records.call_event(function, params))
        duration, self.end, self.cut = self._recorded_end(i)
        if self.cut is not None and self.end == i + 1:
            raise _RecordEnds(self.cut)
        self.calls += 1
        self.cursor = i + 1
        export = self.exports.get(function)
        if export is None:
            export = self.exports[function] = Export.of(instance, store, interface, fn,
                                                        self.shape.signature(component.unversioned(interface), fn))
        store.set_epoch_deadline(1)
        fuel = self.held.fuel if self.held is not None else 0
        if fuel:
            store.set_fuel(fuel)
        seconds = max(CALL_LIMIT_MIN, CALL_LIMIT_FACTOR * duration)
        overran = threading.Event()
        self.alarm.arm(seconds, lambda: (overran.set(), self.engine.increment_epoch()))
        try:
            tag, payload = export(state, params)
        except wasmtime.WasmtimeError as e:
            if overran.is_set() and self.cursor < self.end:
                raise Diverged(self.events[i].seq, f"the call runs past {seconds:g}s; the record has it "
                                                   f"finish in {duration:.3g}s") from None
            j = self._next_actor_event()         # _RecordEnds if the epoch stopped it at the record's end
            if fuel and records.fuel_ran_out(e):
                self._produce(j, "wasm", records.error_event(function, "fuel", records.out_of_fuel(fuel)))
            else:
                self._produce(j, "wasm", records.error_event(function, "trap", records.trap_message(e)))
            return j + 1, state                  # the instance is dead; only lifecycle events follow
        finally:
            self.alarm.disarm()
        j = self._next_actor_event()
        if tag == "err":
            self._produce(j, "wasm", records.error_event(function, "error", payload))
            return j + 1, state
        new_state, returns = records.split_result(payload)
        event, changed = records.result_event(function, returns, state, new_state)
        self._produce(j, "wasm", event)
        if changed:
            self.last_state = new_state
        return j + 1, new_state

    def _recorded_end(self, i: int) -> tuple[float, int, str | None]:
        """How the call recorded at ``i`` ended: seconds until the event that ends it, where its
        record ends, and why that record has no outcome to compare (None when it has one): time
        cut the call short, or its incarnation ended in it. Such a record ends after the last
        event the actor produced in the call."""
        events = self.events
        j = i + 1
        while j < len(events) and events[j].type != "wasm" and not events[j].type.startswith("lifecycle/"):
            j += 1
        seconds = max(0.0, (events[min(j, len(events) - 1)].time_ns - events[i].time_ns) / 1e9)
        body = recorded(events[j]) if j < len(events) else {}
        if j == len(events):
            cut = "the record ends during this call"
        elif events[j].type != "wasm":
            cut = f"the worker died during this call ({body.get('reason', 'no exit recorded')})"
        elif body.get("event") == "error" and body.get("reason") in NOT_REPRODUCIBLE:
            cut = f"the call was cut short ({body['reason']})"
        else:
            return seconds, len(events), None
        while j > i + 1 and _skipped(events[j - 1]):
            j -= 1
        return seconds, j, cut

    def _next_actor_event(self) -> int:
        """The index of the next event the actor produces, after what it wrote to stdout/stderr
        since the last one (each checked against the record as it goes)."""
        self._drain_output()
        self._skip()
        return self.cursor

    def _drain_output(self) -> None:
        output = self.output
        while output is not None and (write := output.take()) is not None:
            stream, data = write
            self._skip()
            self._produce(self.cursor, f"wasi:cli/{stream}/write", wasi.output_event(data))

    def _skip(self) -> None:
        """Skips what the actor does not produce: lifecycle and limit events, and the refusals
        its handlers recorded (the call they refused comes next, and is checked)."""
        events = self.events
        while self.cursor < self.end and _skipped(events[self.cursor]):
            self.cursor += 1
        if self.cursor >= self.end:
            if self.cut is not None:
                raise _RecordEnds(self.cut)
            raise Diverged(events[-1].seq + 1, "the replay goes on after the record ends")

    def _produce(self, i: int, event_type: str, value: Any) -> None:
        """The event the replay just produced must hash like the recorded one at ``i``."""
        rec = self.events[i]
        parent = self.events[i - 1].hash if i > 0 else None
        mine = event_hash(rec.actor_id, rec.seq, parent, event_type, encode_data(value))
        if mine != rec.hash:
            raise Diverged(rec.seq, f"the replay produced {event_type} {short(value)}, the record has "
                                    f"{rec.type} {short(body_of(rec.data))}")
        self.reproduced += 1
        self.cursor = i + 1
        if self.cut is not None and self.cursor == self.end:
            self.engine.increment_epoch()   # the record ends here: stop the call at its next loop or call

    def _feeder(self, interface: str, fn: str) -> Callable[..., Any]:
        """A host function answering with what the record says it answered (rebuilt by the
        handler's ``replayed`` where its events record a shorter form)."""
        event_type = f"{interface}/{fn}"
        spec = grants.for_interface(interface)
        handler = handlers.load().get(spec.type) if spec is not None else None

        def feed(*args: Any) -> Any:
            i = self._next_actor_event()
            rec = self.events[i]
            if rec.type != event_type:
                raise Diverged(rec.seq, f"the actor called {event_type}, the record has {rec.type}")
            body = recorded(rec, "output")
            self._produce(i, event_type, records.host_event(args, body["output"]))
            output = _output(body["output"])
            return handler.replayed(fn, output, self.events) if handler is not None else output
        return feed


def _skipped(ev: Event) -> bool:
    """Not produced by the actor: lifecycle and limit events, and its handlers' refusals."""
    return ev.type.startswith(("lifecycle/", "limit/")) or ev.type.endswith("/permission-denied")


def replay(events: list[Event], home: Home, config: ServerConfig, component_file: Path | None,
           confine: Callable[[], None]) -> Report:
    """Replays one actor's chain; components are found by SHA-256 in the home (or given, and
    then cached under their own hash, not the recorded one), compiled within ``config``'s
    ``[compile]`` limits, each incarnation held to its record's limits else ``config``'s. ``confine``
    runs once all is read, before the actor's code. Sets this process's data rlimit
    (``replaylimits``): run it in a process of its own."""
    given = hashlib.sha256(component_file.read_bytes()).hexdigest() if component_file is not None else ""

    def find(sha: str) -> tuple[Path, str, str]:
        if component_file is None:
            return home.components / f"{sha}.wasm", sha, sha
        return component_file, given, "given-" + given
    replayer = Replayer(events, find, Compiler(home, config.compile, config.source), config.limits)
    confine()
    return replayer.run()

"""A spare's rehearsal: an actor's start, played once with a tiny actor while the spare waits.

A forked worker pays for its first touch of each page it shares with the fork server (a
copy-on-write fault, ~3 us on these VMs; the code pages of the libraries it runs are mapped
in anew too). In a new worker, parsing a manifest took 1.1 ms (0.22 ms warm), linking 1.6 ms
(0.18 ms), the first call 1.2 ms and shipping the first events 1.2 ms, mostly those faults.
A spare has time to spare: it plays the same start with the stage's actor first (parse a
manifest, link, instantiate, call ``init``, ship the events), so the actor it becomes finds
those pages its own. Nothing it makes is kept, and it reaches no one: its host functions only
record, and its events are encoded and hashed but not sent.

The fork server builds the stage once, before its first fork: the rehearsal's component is
compiled there, by an engine without wasmtime's compile thread pool (with it, the children
of a process that compiled deadlock), then loaded into the engine actors use.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import wasmtime
from wasmtime import component as wc

from theater import manifest as manifests

from . import chainlink, component, handlers, records
from .component import ACTOR_INTERFACE, Shape
from .crossing import Export

log = logging.getLogger("theater.zygote")

# The actor: init logs "rehearsal" and returns ok with no state (its return area is zeros).
WAT = """
(component
  (type $runtime_t (instance (export "log" (func (param "msg" string)))))
  (import "theater:simple/runtime" (instance $runtime (type $runtime_t)))
  (core module $libc
    (memory (export "memory") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 4096)))
  (core instance $libc (instantiate $libc))
  (alias export $runtime "log" (func $log_f))
  (core func $log (canon lower (func $log_f) (memory (core memory $libc "memory"))))
  (core instance $rt (export "log" (func $log)))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "rt" "log" (func $log (param i32 i32)))
    (data (i32.const 16) "rehearsal")
    (func (export "init") (param i32 i32 i32 i32 i32) (result i32)
      (call $log (i32.const 16) (i32.const 9))
      (i32.const 1024)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "rt" (instance $rt))))
  (func $init (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "init") (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (instance $actor (export "init" (func $init)))
  (export "theater:simple/actor" (instance $actor)))
"""

MANIFEST = """
name = "rehearsal"
version = "0.1.0"
component = "rehearsal.wasm"

[[handler]]
type = "runtime"

[[handler]]
type = "message-server"

[limits]
memory = "64MiB"
"""
NOBODY = "0" * 32


@dataclass
class Stage:
    engine: wasmtime.Engine            # the engine actors use
    component: wc.Component            # the rehearsal's actor, loaded into it
    shape: Shape


def prepare(engine: wasmtime.Engine) -> Stage:
    """In the fork server, before it forks: the rehearsal's actor, compiled and loaded (~30 ms
    of the fork server's start, before its first spares; a compile of 1 kB, not worth a cache)."""
    compiled, shape = component.build(component.make_engine(False, threads=False), wasmtime.wat2wasm(WAT),
                                      "rehearsal")
    return Stage(engine, wc.Component.deserialize(engine, compiled.serialize()), shape)


def rehearse(stage: Stage) -> None:
    """Plays an actor's start on the stage (see the module's docstring); never raises."""
    try:
        _play(stage)
    except Exception:                   # a rehearsal only saves time: the spare serves without it
        log.exception("worker %d: its rehearsal failed", os.getpid())


def _play(stage: Stage) -> None:
    m = manifests.parse(MANIFEST, "/rehearsal/manifest.toml")
    m = replace(m, limits=manifests.Limits(**asdict(m.limits)))
    pending: list[chainlink.Pending] = []

    def record(event_type: str, value: Any, state_changed: bool = False) -> None:
        pending.append((len(pending), event_type, value, time.time_ns(), state_changed))

    def provide(interface: str, fn: str) -> Any:
        return lambda *args: record(f"{interface}/{fn}", records.host_event(args, None))
    engine, shape = stage.engine, stage.shape
    linker = wc.Linker(engine)
    handlers.link(linker, engine, stage.component, shape, provide)
    store = wasmtime.Store(engine)
    store.set_limits(memory_size=m.limits.memory)
    store.set_epoch_deadline(1)          # no one advances a spare's epoch
    instance = linker.instantiate(store, stage.component)
    linker.close()
    record("lifecycle/start", {"incarnation": 1, "component": NOBODY * 2, "mode": "init", "state": None,
                               "manifest": {"name": m.name, "version": m.version},
                               "limits": records.held_limits(m.limits)})
    name = f"{ACTOR_INTERFACE}.init"
    record("wasm", records.call_event(name, (NOBODY,)))
    init = Export.of(instance, store, ACTOR_INTERFACE, "init", shape.signature(ACTOR_INTERFACE, "init"))
    _tag, payload = init(None, (NOBODY,))
    new_state, returns = records.split_result(payload)
    record("wasm", *records.result_event(name, returns, None, new_state))
    # encoded and hashed as they would ship; shipped nowhere (no ZeroMQ socket: a sandboxed
    # spare must start libzmq's threads only once confined, see worker.sandbox)
    batch, _head = chainlink.encode_events(NOBODY, None, pending)
    chainlink.append_message(NOBODY, batch, sync=True)

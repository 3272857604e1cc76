"""worker.codec against real components, in-process: values cross both ways intact, and the C
values behind them are freed (the arguments after each call, the result tree once lifted), so
thousands of calls with large values leave the process's memory flat.

Through the byte adapter (worker.adapter, issue 16 finding 5) a ``list<u8>`` crosses as one
block: a 4 MiB message, which wasmtime refuses as 4 Mi C values ("too much data is being
copied"), goes in and out of the actor, both ways (an export's parameter and result, a host
function's argument and result), with memory to spare.
"""

from __future__ import annotations

import ctypes
import resource
from pathlib import Path
from typing import Any

import psutil
import pytest
import wasmtime
from wasmtime import component as wc

from worker import adapter, codec, component, handlers, wit
from worker.crossing import Export, add_host_func

from .conftest import ACTORS, EXAMPLES

CLIENT = "theater:simple/message-server-client"
MiB = 1 << 20


class Instance:
    """A component instantiated in this process, as the worker does it (with or without the adapter)."""

    def __init__(self, path: Path, adapted: bool, host: dict[str, Any] | None = None) -> None:
        self.engine = engine = component.make_engine(False)
        wasm = bytes(wasmtime.wat2wasm(path.read_text()))
        plain = wc.Component(engine, wasm)
        self.shape = component.Shape(component._check_imports(engine, plain), *component._check_exports(engine, plain))
        self.shape.adapted = adapted
        comp = wc.Component(engine, adapter.wrap(wasm, self.shape.imports, self.shape.exports)) if adapted else plain
        linker = wc.Linker(engine)
        host = host or {}
        with linker.root() as root:
            for name, ext in comp.type.imports(engine).items():
                with root.add_instance(name) as inst:
                    for fn, fext in ext.ty.exports(engine).items():
                        if isinstance(fext.ty, wc.FuncType):
                            impl = host.get(fn, lambda *_, f=fn: [] if f.startswith("list-") else ("ok", None))
                            add_host_func(inst, fn, fext.ty, impl, self.shape.signature(name, fn))
        self.store = wasmtime.Store(engine)
        self.store.set_limits(memory_size=64 * MiB)
        self.store.set_epoch_deadline(1)
        self.instance = linker.instantiate(self.store, comp)
        linker.close()

    def export(self, interface: str, fn: str) -> Export:
        return Export.of(self.instance, self.store, interface, fn, self.shape.signature(interface, fn))


@pytest.fixture(params=[False, True], ids=["plain", "adapted"])
def counter(request) -> Instance:
    return Instance(EXAMPLES / "counter" / "counter.wat", request.param)


def test_values_cross_both_ways_intact(counter):
    request = counter.export(CLIENT, "handle-request")
    assert request(None, ("r-1", b"")) == ("ok", (b"1", (b"1",)))
    assert request(b"41", ("r-\u00e9\u2603", bytes(range(256)))) == ("ok", (b"42", (b"42",)))
    # a state of 64 KiB: leading zeros are still the number 7
    assert request(b"0" * 65535 + b"7", ("r", b"x")) == ("ok", (b"8", (b"8",)))


def test_large_values_leave_memory_flat(counter):
    """A leaked 16 KiB argument costs 512 KiB a call (one 32-byte C value per byte): 500
    calls would grow the process by 256 MiB for each argument."""
    send = counter.export(CLIENT, "handle-send")
    state, message = b"0" * 16383 + b"1", bytes(16384)
    for _ in range(50):
        send(state, (message,))
    before = psutil.Process().memory_info().rss
    for _ in range(500):
        tag, (new_state,) = send(state, (message,))
        assert tag == "ok" and new_state == b"2"
    assert psutil.Process().memory_info().rss - before < 64 << 20


def probe(adapted: bool, got: dict[str, Any], reply: bytes = b"") -> Instance:
    host = {"request": lambda actor, msg: ("ok", reply), "shutdown": lambda data: got.update(data=data) or ("ok", None),
            "log": lambda msg: got.update(log=msg)}
    return Instance(ACTORS / "probe.wat", adapted, host)


def test_without_the_adapter_wasmtime_refuses_a_4mib_byte_list():
    """What the adapter is for: 4 Mi C values exhaust what wasmtime lets one call copy."""
    p = probe(False, {})
    request = p.export(CLIENT, "handle-request")
    with pytest.raises(wasmtime.WasmtimeError, match="too much data"):
        request(None, ("r", b"e" + bytes(4 * MiB)))


def test_big_byte_lists_cross_in_bulk_and_memory_stays_flat():
    message = bytes(range(256)) * (4 * MiB // 256)       # every byte value, half of them non-ASCII
    got: dict[str, Any] = {}
    p = probe(True, got, reply=message[::-1])
    request = p.export(CLIENT, "handle-request")
    assert p.export("theater:simple/actor", "init")(message, ("probe",)) == ("ok", (message,))
    base = psutil.Process().memory_info().rss
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    for _ in range(3):
        # an export's parameter and result, both 4 MiB (e: echo)
        assert request(message, ("r", b"e" + message)) == ("ok", (message, (message,)))
        # a host function's result (q: request(rest) from the host, reply with what it returned)
        assert request(None, ("r", b"qpeer")) == ("ok", (None, (message[::-1],)))
        # a host function's argument (z: shutdown(some(rest)))
        assert request(None, ("r", b"z" + message)) == ("ok", (None, (b"bye",)))
        assert got.pop("data") == message
    after = psutil.Process().memory_info().rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    # flat: nothing kept from call to call; and no call near the ~160 bytes a byte of C values
    assert after - base < 32 * MiB, (after - base) / MiB
    assert peak - max(peak_before, base) < 24 * len(message), (peak - base) / MiB
    # the adapter's memory and the actor's stay within the store's limit (64 MiB each)
    assert request(None, ("r", b"e" + bytes(12 * MiB))) == ("ok", (None, (bytes(12 * MiB),)))


def test_strings_enums_and_records_keep_their_shapes_through_the_adapter():
    got: dict[str, Any] = {}
    p = probe(True, got)
    request = p.export(CLIENT, "handle-request")
    # a real string stays a string both ways (request ids, the log), whatever its characters
    assert request(None, ("r-\u00e9\u2603\U0001f600", "o\u00e9t\u2603".encode())) == ("ok", (None, (b"logged",)))
    assert got["log"] == "\u00e9t\u2603"
    # records (as tuples) and enums (as integers) come back as the dicts and names they went in as
    package = wit.package()
    cases = [
        (package["theater:simple/supervisor-handlers"].funcs["handle-child-error"].params[1][1],
         ("kid", {"error-type": "paused", "data": b"\x00\xff why"})),
        (package["theater:simple/supervisor"].funcs["get-child-events"].result,
         ("ok", [{"hash": b"\x01" * 32, "parent-hash": None, "event-type": "wasm", "data": b"\x80",
                  "timestamp": 2**63, "description": "d\u00e9"}])),
        (package["theater:simple/runtime"].funcs["get-chain"].result,
         {"events": [{"hash": 7, "event": {"event-type": "x/y", "parent": None, "data": bytes(range(256))}}]}),
    ]
    for text, value in cases:
        c = codec.adapted(wit.parse(text))
        v = codec.Val()
        c.lower(value, v)
        try:
            assert c.lift(v) == value, text
        finally:
            codec.ffi.wasmtime_component_val_delete(ctypes.byref(v))


def test_an_adapted_component_is_linked_from_its_shape_alone():
    """The adapter imports whole interfaces (the counter imports only runtime's log): the shape
    names what the compiled component imports, and a worker links it from that and the WIT,
    without reading the component's types (0.5 ms of a new worker's start)."""
    engine = component.make_engine(False)
    wasm = wasmtime.wat2wasm((EXAMPLES / "counter" / "counter.wat").read_text())
    comp, shape = component.build(engine, wasm, "counter")
    assert shape.adapted
    assert shape.imported == {"theater:simple/runtime": sorted(wit.package()["theater:simple/runtime"].funcs)}
    called: list[tuple[str, tuple[Any, ...]]] = []
    linker = wc.Linker(engine)
    handlers.link(linker, engine, None, shape, lambda _i, fn: lambda *args: called.append((fn, args)))
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1)
    instance = linker.instantiate(store, comp)
    init = Export.of(instance, store, "theater:simple/actor", "init", shape.signature("theater:simple/actor", "init"))
    assert init(None, ("a-1",)) == ("ok", (None,))
    assert called == [("log", ("counter started",))]

"""worker.codec against a real component, in-process: values cross both ways intact, and
the C values behind them are freed (the arguments after each call, the result tree once
lifted), so thousands of calls with large values leave the process's memory flat."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import wasmtime
from wasmtime import component as wc

from worker import component
from worker.codec import Export, add_host_func

from .conftest import EXAMPLES

CLIENT = "theater:simple/message-server-client"


@pytest.fixture
def counter(tmp_path: Path) -> tuple[wc.Instance, wasmtime.Store]:
    engine = component.make_engine(False)
    comp, _, _ = component.load(engine, tmp_path, EXAMPLES / "counter" / "counter.wat", "counter", False)
    linker = wc.Linker(engine)
    with linker.root() as root:
        for name, ext in comp.type.imports(engine).items():
            with root.add_instance(name) as inst:
                for fn, fext in ext.ty.exports(engine).items():
                    if isinstance(fext.ty, wc.FuncType):
                        add_host_func(inst, fn, fext.ty, lambda *_: ("ok", None))
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1)
    instance = linker.instantiate(store, comp)
    linker.close()
    return instance, store


def export(instance: wc.Instance, store: wasmtime.Store, fn: str) -> Export:
    func = instance.get_func(store, instance.get_export_index(store, fn, instance.get_export_index(store, CLIENT)))
    assert func is not None
    return Export(func, store)


def test_values_cross_both_ways_intact(counter):
    request = export(*counter, "handle-request")
    assert request(None, ("r-1", b"")) == ("ok", (b"1", (b"1",)))
    assert request(b"41", ("r-\u00e9\u2603", bytes(range(256)))) == ("ok", (b"42", (b"42",)))
    # a state of 64 KiB: leading zeros are still the number 7
    assert request(b"0" * 65535 + b"7", ("r", b"x")) == ("ok", (b"8", (b"8",)))


def test_large_values_leave_memory_flat(counter):
    """A leaked 16 KiB argument costs 512 KiB a call (one 32-byte C value per byte): 500
    calls would grow the process by 256 MiB for each argument."""
    send = export(*counter, "handle-send")
    state, message = b"0" * 16383 + b"1", bytes(16384)
    for _ in range(50):
        send(state, (message,))
    before = psutil.Process().memory_info().rss
    for _ in range(500):
        tag, (new_state,) = send(state, (message,))
        assert tag == "ok" and new_state == b"2"
    assert psutil.Process().memory_info().rss - before < 64 << 20

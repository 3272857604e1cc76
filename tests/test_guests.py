"""Components built by real toolchains (tests/toolchains.py): their shape, and that they run.

Groundwork for WASI support and Python actors (issues 10 and 11): the Python counter from
componentize-py runs in a real server; the C actor runs under wasmtime's WASI 0.2 with its
clock and random replaced from Python, the way a recorded, replayable WASI will need.
"""

from __future__ import annotations

import gc
import itertools
import re
import subprocess
from pathlib import Path

import orjson
import pytest
import wasmtime
from wasmtime import component as wc

from theater import keys
from theater.events import Event, decode_data, verify_chain

from .conftest import cli_events
from .toolchains import precompiled

P = "theater:simple/"
WASI_CLI = ["environment", "exit", "stderr", "stdin", "stdout", "terminal-input", "terminal-output",
            "terminal-stderr", "terminal-stdin", "terminal-stdout"]
# What the WASI preview1 adapter (jco 1.35.0) imports for a wasi-libc guest: all at 0.2.12.
ADAPTER_WASI = {f"wasi:cli/{i}" for i in WASI_CLI} | {
    "wasi:clocks/monotonic-clock", "wasi:clocks/wall-clock", "wasi:filesystem/preopens", "wasi:filesystem/types",
    "wasi:io/error", "wasi:io/streams", "wasi:random/random"}
# What componentize-py 0.25.1 imports when WASI is not stubbed: all of WASI 0.2, at 0.2.9.
COMPONENTIZE_PY_WASI = ADAPTER_WASI | {"wasi:io/poll"} | {
    f"wasi:sockets/{i}" for i in ("instance-network", "ip-name-lookup", "network", "tcp-create-socket", "tcp",
                                  "udp-create-socket", "udp")}
# The version `linker.add_wasip2()` registers in wasmtime 50. Shadowing an interface at this
# version replaces it for a component importing any 0.2.x (see the test at the end).
WASIP2 = "0.2.12"


def world_of(wasm_tools: list[str], wasm: Path) -> tuple[set[str], set[str]]:
    """The names a component imports and exports, read by wasm-tools (no compiling needed)."""
    text = subprocess.run([*wasm_tools, "component", "wit", str(wasm)], check=True, capture_output=True,
                          text=True).stdout
    world = text[text.index("world root {"):]
    items = re.findall(r"^  (import|export) (\S+?)(?:;|: )", world[:world.index("\n}")], re.M)
    return {n for k, n in items if k == "import"}, {n for k, n in items if k == "export"}


@pytest.mark.timeout(900)       # the first session builds the Python guests: tens of seconds each
@pytest.mark.parametrize("guest, imports, exports", [
    ("counter_py_stub", {P + "runtime", P + "message-server-host", P + "types"},
     # `exports` is componentize-py's own set-up hook; the host never calls it
     {P + "actor", P + "message-server-client", "exports"}),
    ("counter_py_wasi", {P + "runtime", P + "message-server-host", P + "types"}
     | {f"{i}@0.2.9" for i in COMPONENTIZE_PY_WASI},
     {P + "actor", P + "message-server-client", "exports"}),
    # types is not imported: wasm-tools keeps only the functions the C code calls (log)
    ("wasi_c", {P + "runtime"} | {f"{i}@0.2.12" for i in ADAPTER_WASI}, {P + "actor"}),
])
def test_built_component_validates_with_the_expected_imports(request, wasm_tools, guest, imports, exports):
    wasm = request.getfixturevalue(guest)
    subprocess.run([*wasm_tools, "validate", str(wasm)], check=True, capture_output=True)
    assert world_of(wasm_tools, wasm) == (imports, exports)


@pytest.mark.timeout(900)       # builds and compiles the guest the first time
def test_python_counter_runs_in_a_real_server(server, counter_py_stub, tmp_path):
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(f"""\
name = "counter-py"
version = "0.1.0"
component = "{counter_py_stub}"

[[handler]]
type = "runtime"

[[handler]]
type = "message-server"
""")
    precompiled(server.home, counter_py_stub)       # the server's compile: test_big_components
    r = server.cli("start", str(manifest), "--json")
    assert r.code == 0, r.err
    actor = orjson.loads(r.out)["id"]
    assert [server.cli("message", actor, "+1", "--request").out for _ in range(2)] == [b"1", b"2"]
    assert orjson.loads(server.cli("state", actor).out) == {"count": 2}

    events = [Event.from_json(e) for e in cli_events(server, actor)]
    assert verify_chain(events, keys.read_public(server.home)).events == len(events)
    assert all(e.parent == p.hash for p, e in itertools.pairwise(events))
    logs = [decode_data(e.data)["input"][0] for e in events if e.type == "theater:simple/runtime/log"]
    assert logs[0] == f"counter {actor} started at 0"          # the guest's own log lines, recorded
    assert [re.sub(r"request \S+ ", "request ", line) for line in logs[1:]] == ["request #1", "request #2"]
    v = server.cli("verify", actor)
    assert v.code == 0, v.text + v.err


def _init(engine: wasmtime.Engine, component: wc.Component, stdout: Path,
          shadow: str | None = None) -> tuple[object, list[str]]:
    """Instantiates the C actor under WASI 0.2 and calls its init; with ``shadow``, the wall
    clock and random bytes come from Python, registered at that WASI version."""
    linker = wc.Linker(engine)
    linker.add_wasip2()
    logs: list[str] = []
    with linker.root() as root, root.add_instance(P + "runtime") as rt:
        rt.add_func("log", lambda _store, msg: logs.append(msg))
    if shadow:
        linker.allow_shadowing = True

        def now(_store):
            t = wc.Record()
            t.seconds, t.nanoseconds = 1_234_567_890, 0
            return t

        with linker.root() as root:
            with root.add_instance(f"wasi:clocks/wall-clock@{shadow}") as clock:
                clock.add_func("now", now)
                clock.add_func("resolution", now)
            with root.add_instance(f"wasi:random/random@{shadow}") as rnd:
                rnd.add_func("get-random-bytes", lambda _store, n: b"\x2a" * n)
                rnd.add_func("get-random-u64", lambda _store: 42)
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.env = [("GREETING", "hej")]
    wasi.stdout_file = str(stdout)
    store.set_wasi(wasi)                  # always before running a WASI component: without it the process aborts
    instance = linker.instantiate(store, component)
    init = instance.get_func(store, instance.get_export_index(store, "init",
                                                              instance.get_export_index(store, P + "actor")))
    assert init is not None
    result = init(store, None, ("actor-1",))
    del instance, store
    gc.collect()
    return result, logs


LINE = re.compile(rb"init actor-1: wall=(\d+) mono=\d+ random=([0-9a-f]{16}) env=1 vars=GREETING=hej; greeting=hej\n")


@pytest.fixture(scope="module")
def c_actor(wasi_c: Path) -> tuple[wasmtime.Engine, wc.Component]:
    engine = wasmtime.Engine()
    return engine, wc.Component.from_file(engine, str(wasi_c))


def test_c_actor_runs_under_wasi_and_writes_stdout(c_actor, tmp_path):
    (state,), logs = _init(*c_actor, tmp_path / "stdout")
    out = (tmp_path / "stdout").read_bytes()
    m = LINE.fullmatch(out)
    assert m, out                          # the clock, random bytes and env went through WASI
    assert int(m.group(1)) > 1_700_000_000 and m.group(2) != b"2a" * 8
    assert state == out                    # returned as its state through the canonical ABI
    assert logs == ["wasi-c started"]      # and the theater import beside WASI


def test_c_actor_sees_clock_and_random_shadowed_at_the_wasip2_version(c_actor, tmp_path):
    (state,), _ = _init(*c_actor, tmp_path / "stdout", shadow=WASIP2)
    m = LINE.fullmatch(state)
    assert m, state
    assert (m.group(1), m.group(2)) == (b"1234567890", b"2a" * 8)


@pytest.mark.parametrize("imported", ["0.2.0", "0.2.9", WASIP2])
def test_shadowing_at_the_wasip2_version_covers_every_02_import(imported):
    """For replay, clocks and random must come from the host's record. With add_wasip2 and
    allow_shadowing, wasmtime 50 uses a Python definition only at the component's exact
    import version or at the version add_wasip2 registers; any other is silently ignored.
    So one definition at WASIP2 serves componentize-py (0.2.9) and the adapter (0.2.12)."""
    engine = wasmtime.Engine()
    component = wc.Component(engine, f"""(component
      (import "wasi:random/random@{imported}" (instance $r (export "get-random-u64" (func (result u64)))))
      (core func $get (canon lower (func $r "get-random-u64")))
      (core module $m (import "r" "get" (func $get (result i64))) (func (export "run") (result i64) call $get))
      (core instance $i (instantiate $m (with "r" (instance (export "get" (func $get))))))
      (func (export "run") (result u64) (canon lift (core func $i "run"))))""")
    linker = wc.Linker(engine)
    linker.add_wasip2()
    linker.allow_shadowing = True
    with linker.root() as root, root.add_instance(f"wasi:random/random@{WASIP2}") as rnd:
        rnd.add_func("get-random-u64", lambda _store: 42)
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    run = linker.instantiate(store, component).get_func(store, "run")
    assert run is not None and run(store) == 42

"""What a component costs to load, outside the host: the facts issue 11 plans around.

    python scripts/probe_component.py actor.wasm [more.wasm ...] [--json]

For each component: its imports and exports (names with versions), its size, then, each in
a fresh process so one measurement does not warm the next: the compile time (wall and CPU)
and the peak RSS of a process that compiles it (VmHWM, against the same process before
compiling), the size of its serialized form, and the time to deserialize that from a file and instantiate
it (WASI from ``add_wasip2`` when it imports any, every other import a trap). Compiling uses
the worker's engine settings. Single runs on whatever else the machine is doing: read the
figures as orders of magnitude, and measure again before quoting them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent

# Runs in a child process: argv = [wasm, cwasm]; prints one JSON object.
_COMPILE = """
import resource, sys, time, orjson
from worker.component import make_engine
from wasmtime import component as wc
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024
engine = make_engine(fuel=False)
wasm = open(sys.argv[1], "rb").read()
before = hwm()
t, c = time.perf_counter(), cpu()
comp = wc.Component(engine, wasm)
compile_s, compile_cpu_s = time.perf_counter() - t, cpu() - c
peak = hwm()
data = comp.serialize()
open(sys.argv[2], "wb").write(data)
ty = comp.type
print(orjson.dumps({"compile_s": compile_s, "compile_cpu_s": compile_cpu_s, "rss_before": before, "rss_peak": peak,
                    "serialized": len(data),
                    "imports": sorted(ty.imports(engine)), "exports": sorted(ty.exports(engine))}).decode())
"""

_LOAD = """
import sys, time, orjson
import wasmtime
from worker.component import make_engine
from wasmtime import component as wc
engine = make_engine(fuel=False)
t0 = time.perf_counter()
comp = wc.Component.deserialize_file(engine, sys.argv[1])
t1 = time.perf_counter()
linker = wc.Linker(engine)
store = wasmtime.Store(engine)
store.set_epoch_deadline(1)
if any(name.startswith("wasi:") for name in comp.type.imports(engine)):
    linker.add_wasip2()
    store.set_wasi(wasmtime.WasiConfig())   # a WASI component in a store without it aborts the process
linker.define_unknown_imports_as_traps(comp)
t2 = time.perf_counter()
linker.instantiate(store, comp)
t3 = time.perf_counter()
print(orjson.dumps({"deserialize_s": t1 - t0, "instantiate_s": t3 - t2}).decode())
"""


def _child(code: str, *args: str) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"probe failed ({p.returncode}): {p.stderr.strip().splitlines()[-1:]}")
    return orjson.loads(p.stdout)


def probe(wasm: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        cwasm = str(Path(tmp) / "c.cwasm")
        facts = {"file": str(wasm), "size": wasm.stat().st_size, **_child(_COMPILE, str(wasm), cwasm)}
        facts.update(_child(_LOAD, cwasm))
    return facts


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("wasm", nargs="+", type=Path)
    ap.add_argument("--json", action="store_true", help="one JSON object per component")
    args = ap.parse_args()
    for wasm in args.wasm:
        if not wasm.is_file():
            raise SystemExit(f"probe_component: {wasm} is not a file (give the path of a component .wasm)")
        f = probe(wasm)
        if args.json:
            print(orjson.dumps(f).decode())
            continue
        print(f"{f['file']}: {_mib(f['size'])}")
        print(f"  imports: {', '.join(f['imports'])}")
        print(f"  exports: {', '.join(f['exports'])}")
        print(f"  compile {f['compile_s']:.2f} s ({f['compile_cpu_s']:.2f} s CPU), peak RSS {_mib(f['rss_peak'])} "
              f"(from {_mib(f['rss_before'])}), serialized {_mib(f['serialized'])}")
        print(f"  deserialize_file {f['deserialize_s'] * 1e3:.2f} ms, instantiate {f['instantiate_s'] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()

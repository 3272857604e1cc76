"""The raw primitives ``scripts/bench.py`` holds Theater's figures against, measured on the same
machine in the same run: a ZeroMQ round trip between two processes (and through a third),
fork + deserialize + instantiate of a component, and Ed25519 signatures per second.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COUNTER = ROOT / "examples" / "counter" / "counter.wat"

_ECHO = textwrap.dedent("""
    import sys, zmq
    ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER); s.bind(sys.argv[1])
    if len(sys.argv) > 2:          # a router in the middle: forwards to the echo and back
        d = ctx.socket(zmq.DEALER); d.connect(sys.argv[2]); p = zmq.Poller()
        p.register(s, zmq.POLLIN); p.register(d, zmq.POLLIN)
        while True:
            for sock, _ in p.poll():
                if sock is s: d.send_multipart(s.recv_multipart())
                else: s.send_multipart(d.recv_multipart())
    while True: s.send_multipart(s.recv_multipart())
""")


def raw_zmq(tmp: Path, n: int) -> dict[str, float]:
    import zmq
    a, b = f"ipc://{tmp}/echo.sock", f"ipc://{tmp}/mid.sock"
    echo = subprocess.Popen([sys.executable, "-c", _ECHO, a])
    mid = subprocess.Popen([sys.executable, "-c", _ECHO, b, a])
    ctx = zmq.Context()
    out = {}
    try:
        for name, ep in (("zmq_rtt_us", a), ("zmq_routed_rtt_us", b)):
            s = ctx.socket(zmq.DEALER)
            s.connect(ep)
            for _ in range(200):
                s.send(b"x")
                s.recv()
            lat = []
            for _ in range(n):
                t = time.perf_counter()
                s.send(b"x")
                s.recv()
                lat.append((time.perf_counter() - t) * 1e6)
            out[name] = statistics.median(lat)
            s.close(0)
    finally:
        echo.kill()
        mid.kill()
        ctx.term()
    return out


_FORK = textwrap.dedent("""
    import os, sys, time, statistics, wasmtime
    from wasmtime import component as C
    from worker.component import make_engine
    path, other = sys.argv[1], len(sys.argv) > 3      # other: the rest of its imports trap
    if not path.endswith(".cwasm"):
        e = wasmtime.Engine(); open(path + ".cwasm", "wb").write(C.Component(e, open(path, "rb").read()).serialize())
        path += ".cwasm"
    samples = []
    for _ in range(int(sys.argv[2])):
        r, w = os.pipe(); t = time.perf_counter(); pid = os.fork()
        if pid == 0:
            eng = make_engine(False) if other else wasmtime.Engine(); comp = C.Component.deserialize_file(eng, path)
            linker = C.Linker(eng)
            with linker.root() as root:
                with root.add_instance("theater:simple/runtime") as i: i.add_func("log", lambda s, m: None)
            if other: linker.define_unknown_imports_as_traps(comp)
            store = wasmtime.Store(eng); store.set_epoch_deadline(1 << 40)
            linker.instantiate(store, comp); os.write(w, b"x"); os._exit(0)
        os.read(r, 1); samples.append((time.perf_counter() - t) * 1e3); os.waitpid(pid, 0)
    print(statistics.median(samples))
""")


def raw_fork(tmp: Path, n: int, compiled: Path | None = None) -> float:
    """fork of a process that imported wasmtime + deserialize + instantiate: the counter, or the
    component compiled at ``compiled`` (by the server, for the worker's engine)."""
    import wasmtime
    if compiled is None:
        wasm = tmp / "counter.wasm"
        wasm.write_bytes(wasmtime.wat2wasm(COUNTER.read_text()))
    args = [str(wasm), str(n)] if compiled is None else [str(compiled), str(n), "other imports trap"]
    out = subprocess.run([sys.executable, "-c", _FORK, *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip())


def raw_sign(seconds: float = 1.0) -> float:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    k = Ed25519PrivateKey.generate()
    msg = os.urandom(120)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            k.sign(msg)
        n += 200
    return n / (time.perf_counter() - t0)

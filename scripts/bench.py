"""Theater's performance figures against the bars of SPEC §9: prints a table, writes JSON.

    python scripts/bench.py                 # everything (a few minutes)
    python scripts/bench.py --quick         # fewer samples
    python scripts/bench.py --only spawn,actor_rtt --out results.json
    python scripts/bench.py --only http     # HTTP through the gateway vs direct (bench_http.py)
    python scripts/bench.py --only mcp      # an MCP tool call into an actor vs a plain request (bench_mcp.py)
    python scripts/bench.py --actors 500    # also hold 500 concurrent actors
    python scripts/bench.py --console --only cli_rtt   # with the web console on and pages open on
                                            # every actor (bench_console.py); compare without it
    python scripts/bench.py --only raw,python   # the componentize-py actor (18 MB): its first start's
                                            # compile (time, peak memory), spawn vs fork + instantiate,
                                            # requests to it, one-way sends from it (bench_pysend.py)
    python scripts/bench.py --sandbox both  # also spawn, request and one-way with --no-sandbox: the
                                            # sandbox's cost (seccomp, Landlock, network namespace)

Each figure is a median over samples (p95 where it is a latency), measured on a real
server in a temporary home. The raw primitives (ZeroMQ round trips, fork + instantiate,
Ed25519 signing) are measured on the same machine in the same run, so each figure can be
read as a ratio of what the hardware allows here. Never use these numbers in tests: the
machines are noisy; compare medians and ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil
from bench_raw import raw_fork, raw_sign, raw_zmq

from theater.chaindb import ChainReader
from theater.client import Client
from theater.errors import TheaterError, Unreachable
from theater.events import decode_data, verify_chain
from theater.keys import read_public
from theater.paths import Home

ROOT = Path(__file__).resolve().parent.parent

PROBE = ROOT / "tests" / "actors" / "probe.wat"
HANDLERS = ROOT / "tests" / "actors" / "handlers.wat"
COUNTER = ROOT / "examples" / "counter" / "counter.wat"

BARS = {
    "spawn_p50_ms": ("actor spawn, start -> init done, p50", "<= 10 ms", lambda v: v <= 10),
    "actor_rtt_p50_us": ("request round trip actor -> actor, p50", "<= 300 us", lambda v: v <= 300),
    "oneway_msgs_per_s": ("one-way messages, aggregate", ">= 20k/s", lambda v: v >= 20_000),
    "chain_events_per_s": ("chain events signed and durable", ">= 20k/s", lambda v: v >= 20_000),
    "idle_uss_mib": ("unique memory of an idle actor", "<= 10 MiB", lambda v: v <= 10),
    "concurrent_actors": ("concurrent actors on this machine", ">= 500", lambda v: v >= 500),
}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


# ---- the server ------------------------------------------------------------------------------


class Bench:
    def __init__(self, quick: bool, py_component: Path | None = None, console: bool = False) -> None:
        self.quick = quick
        self.console = console
        self.viewer: Any = None
        self.py_component = py_component
        self.tmp = Path(tempfile.mkdtemp(prefix="thb-", dir="/tmp"))
        self.home = Home(self.tmp / "h")
        self.proc: subprocess.Popen[bytes] | None = None
        self.results: dict[str, Any] = {}
        self.notes: dict[str, str] = {}
        self.manifests = self._manifests()

    def _manifests(self) -> dict[str, Path]:
        """Actors with limits raised out of the way: the bench measures the machinery, not the limits."""
        out = {}
        for name, wat in (("counter", COUNTER), ("probe", PROBE)):
            text = textwrap.dedent(f"""
                name = "{name}"
                version = "0.1.0"
                component = "{wat}"
                [[handler]]
                type = "runtime"
                [[handler]]
                type = "message-server"
                [limits]
                mailbox = 1000000
                events_per_second = 10000000
                event_bytes_per_second = "1GiB"
                """)
            path = self.tmp / f"{name}.toml"
            path.write_text(text)
            out[name] = path
        (self.tmp / "files").mkdir()
        (self.tmp / "files" / "f").write_bytes(b"x" * 100)
        grants = {"timing": "", "random": "", "environment": 'allowed_vars = ["HOME"]',
                  "filesystem": f'path = "{self.tmp / "files"}"'}
        out["handlers"] = self.tmp / "handlers.toml"
        out["handlers"].write_text(out["probe"].read_text().replace('"probe"', '"handlers"').replace(
            str(PROBE), str(HANDLERS)) + "".join(f'[[handler]]\ntype = "{t}"\n{k}\n' for t, k in grants.items()))
        return out

    def start_server(self, *flags: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor", "--home", str(self.home.root),
                                      "--log-level", "warning", "--no-restore", *flags,
                                      *(["--console", "127.0.0.1:0"] if self.console else [])],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with Client(self.home, timeout=2) as c:
                    c.ping()
                if self.console:
                    self._open_console()
                return
            except Unreachable:
                time.sleep(0.05)
        raise SystemExit("the server did not start")

    def _open_console(self) -> None:
        url = orjson.loads((self.home.run / "server.json").read_bytes())["console"]
        self.viewer = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bench_console.py")), url],
                                       stdout=subprocess.PIPE, cwd=ROOT)
        assert self.viewer.stdout is not None and self.viewer.stdout.readline() == b"ready\n", "the viewer failed"
        self.results["console"] = url

    def stop_server(self) -> None:
        if self.viewer is not None:
            self.viewer.terminate()
            out, _ = self.viewer.communicate(timeout=30)
            self.results["console_notices_seen"] = int(out.split()[-1])
            self.viewer = None
        if self.proc is None:
            return
        procs = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for p in procs:
            if p.is_running():
                p.kill()
        self.proc = None

    def without_sandbox(self, figures: list[Callable[[], None]]) -> None:
        """The same figures from a server with --no-sandbox, kept as ``<key>_nosandbox``."""
        self.stop_server()
        kept, self.results = self.results, {}
        self.start_server("--no-sandbox")
        for fn in figures:
            print(f"{fn.__name__} (no sandbox) ...", flush=True)
            fn()
        kept.update({f"{k}_nosandbox": v for k, v in self.results.items()})
        self.results = kept

    def client(self, timeout: float = 120) -> Client:
        return Client(self.home, timeout=timeout)

    def start(self, c: Client, name: str) -> str:
        return c.start(self.manifests[name])["id"]

    # ---- figures -----------------------------------------------------------------------------

    def spawn(self) -> None:
        n = 20 if self.quick else 60
        lat = []
        with self.client() as c:
            for _ in range(5):       # warm the compiled-component cache and the fork server
                c.stop(self.start(c, "counter"))
            for _ in range(n):
                t = time.perf_counter()
                actor = self.start(c, "counter")
                lat.append((time.perf_counter() - t) * 1e3)
                c.stop(actor)
        self.results.update(spawn_p50_ms=statistics.median(lat), spawn_p95_ms=pct(lat, 95), spawn_samples=n)

    def cli_rtt(self) -> None:
        n = 300 if self.quick else 1000
        with self.client() as c:
            counter = self.start(c, "counter")
            for _ in range(50):
                c.request(counter, b"x")
            lat = []
            for _ in range(n):
                t = time.perf_counter()
                c.request(counter, b"x")
                lat.append((time.perf_counter() - t) * 1e6)
            c.stop(counter)
        self.results.update(cli_rtt_p50_us=statistics.median(lat), cli_rtt_p95_us=pct(lat, 95))

    def actor_rtt(self) -> None:
        """A probe makes N requests to a counter inside one call (see ``_requests``)."""
        n = 1000 if self.quick else 4000
        with self.client() as c:
            counter = self.start(c, "counter")
            gaps, runs = self._requests(c, counter, n)
            c.stop(counter)
        self.results.update(actor_rtt_p50_us=statistics.median(gaps), actor_rtt_p95_us=pct(gaps, 95),
                            actor_rtt_mean_us=statistics.median(runs))

    def _requests(self, c: Client, target: str, n: int) -> tuple[list[float], list[float]]:
        """A WAT probe makes N requests to ``target`` inside one call, three times: each request's
        time (us) is the gap between consecutive request events in the probe's chain (their times
        are taken as each request returns); and the mean of each run."""
        probe = self.start(c, "probe")
        c.request(probe, f"m200 {target}".encode())          # warm up
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            c.request(probe, f"m{n} {target}".encode())
            runs.append((time.perf_counter() - t) * 1e6 / n)
        evs = [e for e in c.events(probe, types=["theater:simple/message-server-host/request"])][-n:]
        c.stop(probe)
        return [(b.time_ns - a.time_ns) / 1000 for a, b in itertools.pairwise(evs)], runs

    def oneway(self) -> None:
        """Each probe sends N messages to its counter inside one call, then one request; the
        figure counts what the counters received (a send the receiver could not keep up with
        is refused to its sender, and not counted)."""
        pairs = 2
        n = 5000 if self.quick else 20000
        with self.client() as c:
            ids = [(self.start(c, "probe"), self.start(c, "counter")) for _ in range(pairs)]
            counts = {r: int(c.request(p, f"M100 {r}".encode())) for p, r in ids}      # warm up
        rates, refused = [], []
        for _ in range(3):
            done: list[float] = []
            got: dict[str, int] = {}

            def drive(p: str, r: str, done: list[float] = done, got: dict[str, int] = got) -> None:
                with self.client() as cc:
                    got[r] = int(cc.request(p, f"M{n} {r}".encode()))     # the counter's count after all
                    done.append(time.perf_counter())
            threads = [threading.Thread(target=drive, args=pr) for pr in ids]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            delivered = sum(got[r] - counts[r] - 1 for _, r in ids)     # - 1: the closing request
            counts.update(got)
            rates.append(delivered / (max(done) - t0))
            refused.append(pairs * n - delivered)
        with self.client() as c:
            for p, r in ids:
                c.stop(p)
                c.stop(r)
        self.results.update(oneway_msgs_per_s=statistics.median(rates), oneway_pairs=pairs,
                            oneway_refused=statistics.median(refused))

    def chain(self) -> None:
        """Actors log N events each at once; the figure is events per second until the chain
        holds them all (signed, fsynced). Then: verification speed and bytes per event."""
        actors, n = 4, (5000 if self.quick else 20000)
        db = self.home.chains_db
        with self.client() as c:
            ids = [self.start(c, "probe") for _ in range(actors)]
            reader = ChainReader(db)
            base = {ch.actor_id: ch.length for ch in reader.chains()}
            size0 = _db_size(db)
            want = {a: base.get(a, 0) + n + 2 for a in ids}      # + the call and result events

            def drive(a: str) -> None:
                with self.client() as cc:
                    cc.request(a, f"n{n}".encode())
            threads = [threading.Thread(target=drive, args=(a,)) for a in ids]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            while True:
                lengths = {ch.actor_id: ch.length for ch in reader.chains()}
                if all(lengths.get(a, 0) >= w for a, w in want.items()):
                    break
                time.sleep(0.005)
            elapsed = time.perf_counter() - t0
            for th in threads:
                th.join()
            events = actors * (n + 2)
            size = _db_size(db) - size0
            pub = read_public(self.home)
            t = time.perf_counter()
            verified = sum(verify_chain(reader.events(a), pub).events for a in ids)
            vt = time.perf_counter() - t
            sigs = sum(1 for a in ids for e in reader.events(a) if e.signature)
            for a in ids:
                c.stop(a)
        self.results.update(chain_events_per_s=events / elapsed, chain_bytes_per_event=size / events,
                            chain_verify_events_per_s=verified / vt, chain_events_per_signature=verified / sigs)

    # Handler calls timed against a host call that does nothing (runtime.log("")): each is a
    # request to tests/actors/handlers.wat that repeats one call N times inside one export call.
    HOST_CALLS = {"noop": b"o", "timing_now": b"N", "random_bytes_16": b"B" + (16).to_bytes(4, "little"),
                  "random_uuid": b"U", "environment_get_var": b"gHOME", "filesystem_read_100b": b"rf",
                  "filesystem_path_exists": b"pf"}

    def host_calls(self) -> None:
        n = 500 if self.quick else 2000
        with self.client() as c:
            actor = self.start(c, "handlers")
            per_call = {}
            for name, req in self.HOST_CALLS.items():
                message = b"*" + n.to_bytes(4, "little") + req
                c.request(actor, b"*" + (50).to_bytes(4, "little") + req)      # warm up
                runs = []
                for _ in range(3):
                    t = time.perf_counter()
                    c.request(actor, message)
                    runs.append((time.perf_counter() - t) * 1e6 / n)
                per_call[name] = statistics.median(runs)
            c.stop(actor)
        for name, us in per_call.items():
            self.results[f"hostcall_{name}_us"] = us
            if name != "noop":
                self.results[f"hostcall_{name}_over_noop_us"] = us - per_call["noop"]

    def memory(self) -> None:
        k = 20 if self.quick else 50
        with self.client() as c:
            ids = [self.start(c, "counter") for _ in range(k)]
            for a in ids:
                c.request(a, b"x")
            time.sleep(1.0)
            uss = []
            for a in ids:
                pid = c.inspect(a)["pid"]
                uss.append(psutil.Process(pid).memory_full_info().uss / 2**20)
            server_rss = psutil.Process(self.proc.pid).memory_info().rss / 2**20 if self.proc else 0
            for a in ids:
                c.stop(a)
        self.results.update(idle_uss_mib=statistics.median(uss), idle_uss_max_mib=max(uss),
                            server_rss_with_actors_mib=server_rss, memory_actors=k)

    def python(self) -> None:
        """The componentize-py counter (18 MB, CPython inside): its first start on this home, which
        waits for the server to compile it (time, and the compile process's peak memory), then
        spawn p50 from the cache against fork + deserialize + instantiate of the same component,
        requests to it from a WAT probe (as ``actor_rtt``), then one-way sends from it in a loop
        (bench_pysend.py)."""
        from bench_pysend import py_oneway
        wasm = self.py_component or _python_counter()
        if wasm is None:
            print("  skipped: no componentize-py counter (pip install -e '.[test]', or give --py-component)")
            return
        manifest = self.tmp / "counter-py.toml"
        manifest.write_text(f'name = "counter-py"\nversion = "0.1.0"\ncomponent = "{wasm}"\n'
                            '[[handler]]\ntype = "runtime"\n[[handler]]\ntype = "message-server"\n')
        n = 10 if self.quick else 30
        with self.client(timeout=900) as c:
            t = time.perf_counter()
            first = c.start(manifest)["id"]
            first_start = time.perf_counter() - t
            compiled = next(e for e in c.events(first, types=["lifecycle/start"]))
            info = decode_data(compiled.data)["compiled"] or {}
            c.stop(first)
            lat = []
            for i in range(n + 3):          # the first 3 warm the fork server's spares
                t = time.perf_counter()
                actor = c.start(manifest)["id"]
                if i >= 3:
                    lat.append((time.perf_counter() - t) * 1e3)
                c.stop(actor)
            answering = c.start(manifest)["id"]
            gaps, _ = self._requests(c, answering, 500 if self.quick else 2000)
            c.stop(answering)
            self.results.update(py_rtt_p50_us=statistics.median(gaps), py_rtt_p95_us=pct(gaps, 95))
            sends = 5000 if self.quick else 20000
            self.results.update(py_oneway(c, wasm, self.manifests["counter"], self.tmp, sends))
        cwasm = self.home.compiled(hashlib.sha256(wasm.read_bytes()).hexdigest(), False)
        self.results.update(py_first_start_s=first_start, py_compile_s=info.get("seconds", 0.0),
                            py_compile_peak_mib=info.get("peak", 0) / 2**20, py_spawn_p50_ms=statistics.median(lat),
                            py_spawn_p95_ms=pct(lat, 95),
                            py_fork_instantiate_ms=raw_fork(self.tmp, 10 if self.quick else 30, cwasm))

    def restart(self) -> None:
        n = 5 if self.quick else 15
        lat = []
        with self.client() as c:
            counter = self.start(c, "counter")
            for _ in range(n):
                pid = c.inspect(counter)["pid"]
                t = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                while True:
                    try:
                        info = c.inspect(counter)
                        if info["status"] == "running" and info["pid"] != pid:
                            c.request(counter, b"x")
                            break
                    except TheaterError:
                        pass
                    time.sleep(0.001)
                lat.append((time.perf_counter() - t) * 1e3)
                time.sleep(2.0)       # stay under the restart intensity (3 in 5 s)
            c.stop(counter)
        self.results.update(restart_p50_ms=statistics.median(lat), restart_p95_ms=pct(lat, 95))

    def http(self) -> None:
        from bench_http import http_overhead
        with self.client() as c:
            self.results.update(http_overhead(c, self.tmp, 200 if self.quick else 1000))

    def mcp(self) -> None:
        from bench_mcp import mcp_overhead
        with self.client() as c:
            self.results.update(mcp_overhead(c, self.home.root, 200 if self.quick else 1000))

    def concurrent(self, count: int) -> None:
        with self.client(timeout=600) as c:
            t = time.perf_counter()
            ids = []
            try:
                for _ in range(count):
                    ids.append(self.start(c, "counter"))
                answered = sum(1 for a in ids if c.request(a, b"x") == b"1")
            finally:
                elapsed = time.perf_counter() - t
                total_uss = sum(psutil.Process(c.inspect(a)["pid"]).memory_full_info().uss for a in ids[:50]) / 2**20
                for a in ids:
                    c.stop(a)
        self.results.update(concurrent_actors=answered, concurrent_start_s=elapsed,
                            concurrent_uss_mib_per_actor=total_uss / min(50, len(ids)),
                            available_memory_gib=psutil.virtual_memory().available / 2**30)


def _python_counter() -> Path | None:
    """The componentize-py counter the tests build (tests/toolchains.py, cached), if it can be built here."""
    import pytest  # toolchains skips through pytest when a tool is missing

    sys.path.insert(0, str(ROOT))
    try:
        from tests import toolchains
        return toolchains._componentize(stub_wasi=True)
    except (Exception, pytest.skip.Exception) as e:
        print(f"  no componentize-py counter: {e}", flush=True)
        return None


def _db_size(db: Path) -> int:
    """Bytes the database holds, WAL included (page count x page size, as a reader sees it)."""
    import sqlite3
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA page_count").fetchone()[0] * con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--only", help="comma-separated: raw,spawn,cli_rtt,actor_rtt,oneway,chain,host_calls,memory,"
                                   "restart,http,python,mcp")
    ap.add_argument("--py-component", type=Path, metavar="WASM",
                    help="the componentize-py counter to measure (default: build it as the tests do)")
    ap.add_argument("--actors", type=int, default=0, help="also start this many actors at once (e.g. 500)")
    ap.add_argument("--console", action="store_true",
                    help="run the server with --console and pages open on every actor (bench_console.py)")
    ap.add_argument("--out", default="bench-results.json", help="where to write the JSON (default %(default)s)")
    ap.add_argument("--sandbox", choices=["on", "off", "both"], default="on",
                    help="workers sandboxed (the default), not (--no-sandbox), or both: spawn, actor_rtt and oneway "
                         "measured again without it, as *_nosandbox")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    b = Bench(args.quick, args.py_component, args.console)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("spawn", b.spawn), ("cli_rtt", b.cli_rtt), ("actor_rtt", b.actor_rtt), ("oneway", b.oneway),
        ("chain", b.chain), ("host_calls", b.host_calls), ("memory", b.memory), ("restart", b.restart),
        ("http", b.http), ("python", b.python), ("mcp", b.mcp)]
    try:
        if only is None or "raw" in only:
            print("raw primitives ...", flush=True)
            b.results.update(raw_zmq(b.tmp, 2000 if not args.quick else 500))
            b.results["fork_instantiate_ms"] = raw_fork(b.tmp, 30 if not args.quick else 10)
            b.results["ed25519_signs_per_s"] = raw_sign()
        b.start_server(*(["--no-sandbox"] if args.sandbox == "off" else []))
        for name, fn in steps:
            if only is None or name in only:
                print(f"{name} ...", flush=True)
                fn()
        if args.actors:
            print(f"{args.actors} concurrent actors ...", flush=True)
            b.concurrent(args.actors)
        if args.sandbox == "both":
            b.without_sandbox([fn for name, fn in steps if name in ("spawn", "actor_rtt", "oneway")
                               and (only is None or name in only)])
    finally:
        b.stop_server()
        shutil.rmtree(b.tmp, ignore_errors=True)
    report(b.results, args.out)


def report(r: dict[str, Any], out: str) -> None:
    ratios = {}
    if "spawn_p50_ms" in r and "fork_instantiate_ms" in r:
        ratios["spawn / (fork + instantiate)"] = r["spawn_p50_ms"] / r["fork_instantiate_ms"]
    if "py_spawn_p50_ms" in r and "py_fork_instantiate_ms" in r:
        ratios["python spawn / (fork + instantiate)"] = r["py_spawn_p50_ms"] / r["py_fork_instantiate_ms"]
    if "actor_rtt_p50_us" in r and "zmq_rtt_us" in r:
        ratios["actor rtt / one-hop zmq rtt"] = r["actor_rtt_p50_us"] / r["zmq_rtt_us"]
    if "py_rtt_p50_us" in r and "zmq_rtt_us" in r:
        ratios["python actor rtt / one-hop zmq rtt"] = r["py_rtt_p50_us"] / r["zmq_rtt_us"]
    if "http_gateway_p50_us" in r:
        ratios["http through the gateway / direct"] = r["http_gateway_p50_us"] / r["http_direct_p50_us"]
    if "mcp_stdio_p50_us" in r:
        ratios["mcp tool call (stdio) / plain request"] = r["mcp_stdio_p50_us"] / r["mcp_request_p50_us"]
        ratios["mcp tool call (http) / plain request"] = r["mcp_http_p50_us"] / r["mcp_request_p50_us"]
    for key in ("spawn_p50_ms", "actor_rtt_p50_us", "oneway_msgs_per_s"):
        if f"{key}_nosandbox" in r:
            ratios[f"{key} sandbox on / off"] = r[key] / r[f"{key}_nosandbox"]
    if "chain_events_per_s" in r and "ed25519_signs_per_s" in r:
        ratios["chain events / raw signs"] = r["chain_events_per_s"] / r["ed25519_signs_per_s"]
    print()
    print(f"{'figure':48} {'measured':>14}  {'bar':>10}  ok")
    for key, (label, bar, test) in BARS.items():
        if key in r:
            print(f"{label:48} {r[key]:>14,.1f}  {bar:>10}  {'yes' if test(r[key]) else 'NO'}")
    print()
    for key, value in sorted(r.items()):
        if key not in BARS:
            print(f"  {key:40} {value:>14,.2f}" if isinstance(value, float) else f"  {key:40} {value:>14}")
    for key, value in ratios.items():
        print(f"  ratio {key:34} {value:>14,.2f}")
    doc = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
           "results": r, "ratios": ratios, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(out).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

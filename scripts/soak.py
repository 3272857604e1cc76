"""Soak theater-server under churn and watch its processes for anything that grows: a leak hunt.

    python scripts/soak.py --minutes 5                 # a first look
    python scripts/soak.py --minutes 25 --out soak.json
    python scripts/soak.py --minutes 60 --rate 4 --interval 15 --warmup 5

Runs a real server in a temporary THEATER_HOME and, for --minutes, churns as production does, a
few operations a second (--rate): actors started and stopped; one-way messages and requests from
clients and between actors; actors that trap or are killed and are restarted by supervision; a
parent actor that spawns and stops children; actors that store content and make HTTP requests (to
a loopback server of the soak's) through the gateway process; channels opened and closed by actors
and by `theater channel open`; `theater` commands (events, inspect, state, verify, top, list,
chains, logs, prune) and Prometheus scrapes (the server runs with --metrics); and clients killed
(SIGKILL) in the middle of a request, an `events --follow` or an open channel. With --console, the
web console too, with a page open on every actor (scripts/bench_console.py).

Every --interval seconds it samples, per process (the server, the chain process, the worker fork
server, the gateway, the console and one long-lived actor's worker): RSS and USS, open fds (and
how many are sockets), threads and children; the USS and fds of every long-lived actor's worker,
summed (L.); the zombies under the server; the files in THEATER_HOME/run; the size of chains.db
(WAL included); and the actors the server lists. At the end it prints the samples and, for each
figure, its growth per hour after --warmup (a least-squares slope): what grows with churn, rather
than settling, is a leak to look at. A tool for operators and developers, not a test: its figures
depend on the machine. The churn is rate-limited and runs in one thread (the machine may be
shared); the soak stops by itself and kills only the processes it started.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil

from theater.client import Client
from theater.errors import TheaterError, Unreachable
from theater.paths import Home

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ACTORS = ROOT / "tests" / "actors"

# A client that connects, says so on stdout, then makes one request: the soak kills it mid-request.
ABRUPT_CLIENT = textwrap.dedent("""
    import sys
    from theater.client import Client
    from theater.paths import Home
    c = Client(Home(sys.argv[1]), timeout=120)
    c.ping()
    print("go", flush=True)
    c.request(sys.argv[2], sys.argv[3].encode())
    """)


class _Web(http.server.BaseHTTPRequestHandler):
    """What the agent actor's HTTP requests reach, through the gateway: a loopback server here."""

    def do_GET(self) -> None:
        body = b"soak"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def _fields(op: str, *fields: bytes) -> bytes:
    """A message to tests/actors/agent.wat: an op byte and u32-length-prefixed fields."""
    return op.encode() + b"".join(struct.pack("<I", len(f)) + f for f in fields)


def manifest(name: str, wat: Path, handlers: tuple[str, ...] = ("runtime", "message-server"), extra: str = "") -> str:
    """A manifest for a test or example WAT actor, with its mailbox and event rates out of the way."""
    hs = "".join(f'[[handler]]\ntype = "{h}"\n' for h in handlers)
    return (f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{wat}"\n{hs}'
            f'[limits]\nmailbox = 100000\nevents_per_second = 1000000\n{extra}')


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="ths-", dir="/tmp"))     # short: unix socket paths
        self.home = Home(self.tmp / "h")
        self.proc: subprocess.Popen[bytes] | None = None
        self.viewer: subprocess.Popen[bytes] | None = None      # --console: pages open on every actor
        self.web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Web)      # the agent's requests go here
        threading.Thread(target=self.web.serve_forever, daemon=True).start()
        self.manifests = self._manifests()
        self.ids: dict[str, str] = {}           # the long-lived actors, by name
        self.stopped: list[str] = []            # actors stopped by the churn (for verify, events, inspect)
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.first_error: dict[str, str] = {}
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.children: list[subprocess.Popen[bytes]] = []     # clients started by the churn, not yet reaped
        self.rng = random.Random(args.seed)

    def _manifests(self) -> dict[str, Path]:
        counter = EXAMPLES / "counter" / "counter.wat"
        probe = ACTORS / "probe.wat"
        docs = {
            "keeper": manifest("keeper", counter),
            "temp": manifest("temp", counter),
            "child": manifest("child", Path("counter.wat")),     # an actor's spawn names relative paths
            "sink": manifest("sink", probe),
            "prober": manifest("prober", probe),
            "crashy": manifest("crashy", probe, extra="[restart]\nintensity = 1000\nperiod = 1\n"),
            "parent": manifest("parent", ACTORS / "parent.wat", ("runtime", "message-server", "supervisor")),
            "echo": manifest("echo", EXAMPLES / "channel" / "echo.wat"),
            "opener": manifest("opener", EXAMPLES / "channel" / "opener.wat"),
            "ping": manifest("ping", EXAMPLES / "ping-pong" / "ping.wat"),
            "pong": manifest("pong", EXAMPLES / "ping-pong" / "pong.wat"),
            "hello": manifest("hello", EXAMPLES / "hello" / "hello.wat", ("runtime",),
                              '[restart]\ntype = "transient"\n'),
            "agent": manifest("agent", ACTORS / "agent.wat", ("message-server",))
            + f'[[handler]]\ntype = "http-client"\nallowed_hosts = ["127.0.0.1:{self.web.server_port}"]\n'
              f'[[handler]]\ntype = "store"\n',
        }
        shutil.copy(counter, self.tmp / "counter.wat")
        out = {}
        for name, text in docs.items():
            out[name] = self.tmp / f"{name}.toml"
            out[name].write_text(text)
        return out

    # ---- the server -------------------------------------------------------------------------

    def start_server(self) -> None:
        flags = ["--metrics", "127.0.0.1:0", *(["--no-sandbox"] if self.args.no_sandbox else []),
                 *(["--console", "127.0.0.1:0"] if self.args.console else [])]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--home", str(self.home.root), "--log-level", "info", *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited at its start (status {self.proc.returncode}): see "
                                 f"{self.home.logs / 'server.log'}")
            try:
                with Client(self.home, timeout=2) as c:
                    c.ping()
                if self.args.console:
                    self._open_console()
                return
            except Unreachable:
                time.sleep(0.05)
        raise SystemExit("the server did not start within 30 s")

    def _open_console(self) -> None:
        """A browser's load on the web console (bench_console.py): the tree page, and a tab on every
        running actor, opened and closed as actors come and go."""
        url = orjson.loads((self.home.run / "server.json").read_bytes())["console"]
        self.viewer = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bench_console.py")), url],
                                       stdout=subprocess.PIPE, cwd=ROOT)
        assert self.viewer.stdout is not None
        if self.viewer.stdout.readline() != b"ready\n":
            raise SystemExit("the console viewer (bench_console.py) did not start")

    def stop_server(self) -> None:
        self.web.shutdown()
        if self.viewer is not None:
            self.viewer.terminate()
            self.viewer.communicate(timeout=30)
            self.viewer = None
        for p in self.children:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()
        if self.proc is None:
            return
        tree: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        self.proc = None

    def client(self, timeout: float = 60) -> Client:
        return Client(self.home, timeout=timeout)

    def cli(self, *args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run([sys.executable, "-m", "theater", "--home", str(self.home.root), *args], input=stdin,
                           capture_output=True, timeout=timeout, cwd=ROOT)
        if p.returncode != 0:
            raise TheaterError(f"theater {' '.join(args)}: exit {p.returncode}: {p.stderr.decode().strip()[-200:]}")
        return p

    def spawn_client(self, *argv: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, cwd=ROOT)
        self.children.append(p)
        return p

    def kill_client(self, p: subprocess.Popen[bytes]) -> None:
        p.kill()
        p.wait()
        self.children.remove(p)
        for pipe in (p.stdin, p.stdout):
            if pipe is not None:
                pipe.close()

    # ---- the churn --------------------------------------------------------------------------

    def setup(self, c: Client) -> None:
        for name in ("keeper", "sink", "prober", "parent", "echo", "opener", "ping"):
            self.ids[name] = c.start(self.manifests[name])["id"]

    def op_start_stop(self, c: Client) -> None:
        """A short-lived actor: started, a request and a send, stopped."""
        a = c.start(self.manifests["temp"])["id"]
        c.request(a, b"x")
        c.send(a, b"x")
        self._stopped(c, a)

    def op_messages(self, c: Client) -> None:
        """Requests and one-way messages, client -> actor and actor -> actor."""
        keeper = self.ids["keeper"]
        c.request(keeper, b"x")
        c.send(keeper, b"x")
        c.request(self.ids["prober"], f"m5 {keeper}".encode())
        c.request(self.ids["prober"], f"M20 {keeper}".encode())

    def op_ping_pong(self, c: Client) -> None:
        """An actor's request to a short-lived one."""
        pong = c.start(self.manifests["pong"])["id"]
        if c.request(self.ids["ping"], pong.encode()) != b"pong":
            raise TheaterError("ping did not get pong")
        self._stopped(c, pong)

    def op_crash(self, c: Client) -> None:
        """An actor that traps, then whose worker is killed: supervision restarts it each time."""
        a = c.start(self.manifests["crashy"])["id"]
        for how in ("trap", "kill"):
            pid = c.inspect(a)["pid"]
            if how == "trap":
                with contextlib.suppress(TheaterError):
                    c.request(a, b"t")
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._restarted(c, a, pid)
        c.request(a, b"eback")
        self._stopped(c, a)

    def _restarted(self, c: Client, actor: str, old_pid: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(TheaterError):
                info = c.inspect(actor)
                if info["status"] == "running" and info.get("pid") not in (None, old_pid):
                    return
            time.sleep(0.05)
        raise TheaterError(f"{actor} was not restarted within {timeout:g}s")

    def op_children(self, c: Client) -> None:
        """The long-lived parent spawns a child, asks it, stops it; or a short-lived parent spawns
        two and is stopped with them."""
        child = self.manifests["child"].name      # beside the parent's manifest: an actor names relative paths
        if self.rng.random() < 0.75:
            parent = self.ids["parent"]
            kid = c.request(parent, b"S" + child.encode()).decode()
            if kid.startswith("error"):
                raise TheaterError(f"spawn: {kid}")
            c.request(parent, f"Q{kid} x".encode())
            if c.request(parent, b"K" + kid.encode()) != b"ok":
                raise TheaterError("stop-child failed")
            return
        parent = c.start(self.manifests["parent"])["id"]
        for _ in range(2):
            c.request(parent, b"S" + child.encode())
        self._stopped(c, parent)

    def op_channel_actor(self, c: Client) -> None:
        """An actor opens a channel to another, talks, closes it."""
        ch = c.request(self.ids["opener"], self.ids["echo"].encode())
        if not ch.startswith(b"ch_"):
            raise TheaterError(f"opener: {ch!r}")

    def op_channel_client(self, c: Client) -> None:
        """`theater channel open`: to its end of input, or killed while the channel is open."""
        if self.rng.random() < 0.5:
            self.cli("channel", "open", self.ids["echo"], "hi", stdin=b"a\nb\n")
            return
        p = self.spawn_client("-m", "theater", "--home", str(self.home.root), "channel", "open", self.ids["echo"], "hi")
        assert p.stdout is not None
        p.stdout.readline()          # echo's "welcome": the channel is open
        self.kill_client(p)

    def op_abrupt(self, c: Client) -> None:
        """A client killed mid-request (a busy actor, or one that never answers), or mid `events --follow`."""
        kind = self.rng.choice(("busy", "never", "follow"))
        if kind == "follow":
            a = c.start(self.manifests["temp"])["id"]
            p = self.spawn_client("-m", "theater", "--home", str(self.home.root), "events", a, "--follow")
            assert p.stdout is not None
            p.stdout.readline()      # its first event: it follows
            self.kill_client(p)
            c.request(a, b"x")       # an event published after the follower died
            self._stopped(c, a)
            return
        message = "w1000" if kind == "busy" else "d"
        p = self.spawn_client("-c", ABRUPT_CLIENT, str(self.home.root), self.ids["sink"], message)
        assert p.stdout is not None
        p.stdout.readline()
        time.sleep(0.05)
        self.kill_client(p)
        if self.ops["abrupt"] % 10 == 9:      # the never-answered requests answered at last, to nobody
            c.request(self.ids["sink"], b"r")

    def op_agent(self, c: Client) -> None:
        """An actor that stores content and makes an HTTP request, both through the gateway process."""
        a = c.start(self.manifests["agent"])["id"]
        store = self._agent(c, a, "n")
        digest = self._agent(c, a, "s", store, os.urandom(64))
        self._agent(c, a, "g", store, digest)
        self._agent(c, a, "H", b"GET", f"http://127.0.0.1:{self.web.server_port}/soak".encode())
        self._stopped(c, a)

    def _agent(self, c: Client, actor: str, op: str, *fields: bytes) -> bytes:
        reply = c.request(actor, _fields(op, *fields))
        if reply[:1] != b"O":
            raise TheaterError(f"agent {op}: {reply[:200]!r}")
        return reply[1:]

    def op_hello(self, c: Client) -> None:
        """An actor that ends itself (transient: not restarted); `prune` forgets it (op_cli)."""
        self.stopped.append(c.start(self.manifests["hello"])["id"])

    def op_cli(self, c: Client) -> None:
        """One `theater` command, in turn."""
        which = ["events", "inspect", "state", "verify", "top", "list", "chains", "logs", "prune", "inspect-stopped",
                 "metrics"]
        cmd = which[self.ops["cli"] % len(which)]
        if cmd == "metrics":        # a Prometheus scrape
            url = orjson.loads((self.home.run / "server.json").read_bytes())["metrics"]
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
            return
        keeper = self.ids["keeper"]
        gone = self.stopped[-1] if self.stopped else keeper
        args = {"events": ["events", keeper, "--tail", "5"], "inspect": ["inspect", keeper],
                "state": ["state", keeper], "verify": ["verify", gone], "top": ["top", "--json"], "list": ["list"],
                "chains": ["chains"], "logs": ["logs", self.ids["opener"]], "prune": ["prune"],
                "inspect-stopped": ["inspect", gone]}[cmd]
        self.cli(*args)

    def _stopped(self, c: Client, actor: str) -> None:
        c.stop(actor)
        self.stopped.append(actor)
        del self.stopped[:-100]

    OPS: dict[str, int] = {"start_stop": 3, "messages": 4, "ping_pong": 2, "crash": 1, "children": 2,
                           "channel_actor": 2, "channel_client": 1, "abrupt": 2, "hello": 1, "cli": 3, "agent": 1}

    def churn(self, until: float) -> None:
        names = list(self.OPS)
        weights = [self.OPS[n] for n in names]
        period = 1 / self.args.rate
        with self.client() as c:
            self.setup(c)
            nxt = time.monotonic()
            while time.monotonic() < until:
                name = self.rng.choices(names, weights)[0]
                fn: Callable[[Client], None] = getattr(self, f"op_{name}")
                try:
                    fn(c)
                except (TheaterError, OSError, subprocess.SubprocessError, ValueError) as e:
                    self.errors[name] += 1
                    self.first_error.setdefault(name, f"{type(e).__name__}: {e}")
                self.ops[name] += 1
                nxt = max(nxt + period, time.monotonic() - 1)
                time.sleep(max(0.0, nxt - time.monotonic()))
                if self.proc is not None and self.proc.poll() is not None:
                    raise SystemExit(f"the server died (status {self.proc.returncode}): see "
                                     f"{self.home.logs / 'server.log'}")

    # ---- samples ----------------------------------------------------------------------------

    def sampler(self, stop: threading.Event) -> None:
        with self.client(timeout=30) as c:
            while not stop.is_set():
                with contextlib.suppress(TheaterError, psutil.Error, OSError):
                    self.samples.append(self.sample(c))
                    if self.args.verbose:
                        print(_row(self.samples[-1]), flush=True)
                stop.wait(self.args.interval)

    def helpers(self) -> dict[str, psutil.Process]:
        """The server's helper processes by role (the chain process, the worker fork server)."""
        assert self.proc is not None
        out = {"server": psutil.Process(self.proc.pid)}
        for p in out["server"].children():
            with contextlib.suppress(psutil.Error):
                line = p.cmdline()
                if line[1:3] == ["-m", "chain"]:
                    out["chain"] = p
                elif line[1:4] == ["-m", "worker", "serve"]:
                    out["fork"] = p
                elif line[1:3] == ["-m", "supervisor.console"]:
                    out["console"] = p
                elif line[1:3] == ["-m", "supervisor.gateway"]:
                    out["gateway"] = p
        return out

    def sample(self, c: Client) -> dict[str, Any]:
        s: dict[str, Any] = {"t": time.monotonic() - self.started, "ops": sum(self.ops.values())}
        procs = self.helpers()
        with contextlib.suppress(TheaterError, KeyError):
            procs["keeper"] = psutil.Process(c.inspect(self.ids["keeper"])["pid"])
        for role, p in procs.items():
            with contextlib.suppress(psutil.Error, OSError):
                mem = p.memory_full_info()
                fds = os.listdir(f"/proc/{p.pid}/fd")
                s[f"{role}.rss"] = mem.rss / 2**20
                s[f"{role}.uss"] = mem.uss / 2**20
                s[f"{role}.fds"] = len(fds)
                s[f"{role}.socks"] = sum(1 for fd in fds if _link(p.pid, fd).startswith("socket:"))
                s[f"{role}.thr"] = p.num_threads()
                if role != "keeper":
                    s[f"{role}.kids"] = len(p.children())
        lived = []          # every long-lived actor's worker, summed: one that talks to short-lived ones too
        for actor in self.ids.values():
            with contextlib.suppress(TheaterError, KeyError, psutil.Error, OSError):
                p = psutil.Process(c.inspect(actor)["pid"])
                lived.append((p.memory_full_info().uss, len(os.listdir(f"/proc/{p.pid}/fd"))))
        if lived:
            s["lived.uss"] = sum(u for u, _ in lived) / 2**20
            s["lived.fds"] = sum(f for _, f in lived)
        tree = procs["server"].children(recursive=True)
        s["zombies"] = sum(1 for p in tree if _status(p) == psutil.STATUS_ZOMBIE)
        s["run_files"] = sum(len(files) for _, _, files in os.walk(self.home.run))
        s["db_mib"] = sum(f.stat().st_size for f in self.home.root.glob("chains.db*")) / 2**20
        s["actors"] = len(c.call("list")[0]["actors"])
        return s

    # ---- the report -------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        print(f"\n{len(self.samples)} samples, every {self.args.interval:g} s; operations: "
              + ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items())))
        for name, count in sorted(self.errors.items()):
            print(f"  {name}: {count} failed, the first: {self.first_error[name]}")
        print()
        print(_header())
        for s in self.samples:
            print(_row(s))
        warm = self.args.warmup * 60
        after = [s for s in self.samples if s["t"] >= warm] or self.samples
        growth = {}
        print(f"\ngrowth after the warm-up ({self.args.warmup:g} min, {len(after)} samples): least-squares slope; "
              f"<- marks a figure that grew more than 1% of its peak an hour (chains.db does: chains are kept)")
        print(f"  {'figure':16} {'first':>10} {'last':>10} {'min':>10} {'max':>10} {'per hour':>12}")
        for key in dict.fromkeys(k for s in self.samples for k in s if k not in ("t", "ops")):
            points = [(s["t"], s[key]) for s in after if key in s]
            if len(points) < 2:
                continue
            per_hour = _slope(points) * 3600
            values = [v for _, v in points]
            growth[key] = per_hour
            flag = "  <-" if per_hour > 0 and values[-1] > values[0] and abs(per_hour) > 0.01 * max(1, max(values)) \
                else ""
            print(f"  {key:16} {values[0]:>10.1f} {values[-1]:>10.1f} {min(values):>10.1f} {max(values):>10.1f} "
                  f"{per_hour:>+12.1f}{flag}")
        return {"samples": self.samples, "growth_per_hour": growth, "ops": dict(self.ops),
                "errors": {k: [v, self.first_error[k]] for k, v in self.errors.items()},
                "args": {k: v for k, v in vars(self.args).items() if k != "out"}}


COLUMNS = [("t", "min", 5), ("ops", "ops", 5)] + [
    (f"{role}.{what}", f"{short}{what}", 7) for role, short in (("server", "s."), ("chain", "c."), ("fork", "f."),
                                                                ("keeper", "k."))
    for what in ("rss", "uss", "fds", "socks", "thr", "kids") if not (role == "keeper" and what == "kids")] + [
    ("lived.uss", "L.uss", 6), ("lived.fds", "L.fds", 5), ("zombies", "zomb", 5), ("run_files", "run", 4),
    ("db_mib", "dbMiB", 6), ("actors", "actrs", 5)]


def _header() -> str:
    return " ".join(f"{label:>{w}}" for _, label, w in COLUMNS)


def _row(s: dict[str, Any]) -> str:
    cells = []
    for key, _, w in COLUMNS:
        v = s.get(key)
        if key == "t":
            v = v / 60
        cells.append(f"{'-':>{w}}" if v is None else f"{v:>{w}.1f}" if isinstance(v, float) else f"{v:>{w}}")
    return " ".join(cells)


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0


def _link(pid: int, fd: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return ""


def _status(p: psutil.Process) -> str:
    try:
        return p.status()
    except psutil.Error:
        return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5, help="how long to churn (default %(default)s)")
    ap.add_argument("--rate", type=float, default=3, help="churn operations started per second (default %(default)s)")
    ap.add_argument("--interval", type=float, default=10, help="seconds between samples (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=2,
                    help="minutes left out of the growth figures: caches and spares fill (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the churn's random choices (default %(default)s)")
    ap.add_argument("--no-sandbox", action="store_true", help="run the server with --no-sandbox")
    ap.add_argument("--console", action="store_true",
                    help="run the server with --console, and pages open on every actor (bench_console.py)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary home (its logs, chains.db) at the end")
    ap.add_argument("--out", type=Path, help="also write the samples and growth figures as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each sample as it is taken")
    args = ap.parse_args()
    if args.minutes <= 0 or args.rate <= 0 or args.interval <= 0:
        ap.error("--minutes, --rate and --interval must be positive")
    soak = Soak(args)
    stop = threading.Event()
    sampler = threading.Thread(target=soak.sampler, args=(stop,), daemon=True)
    try:
        soak.start_server()
        print(f"soaking {soak.home.root} for {args.minutes:g} min at {args.rate:g} operations/s ...", flush=True)
        if args.verbose:
            print(_header(), flush=True)
        sampler.start()
        soak.churn(time.monotonic() + args.minutes * 60)
        stop.set()
        sampler.join()
        with soak.client(timeout=30) as c:       # the last sample: after the churn, before the stop
            soak.samples.append(soak.sample(c))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        stop.set()
        soak.stop_server()
        if args.keep:
            print(f"kept {soak.tmp}")
        else:
            shutil.rmtree(soak.tmp, ignore_errors=True)
    result = soak.report()
    if args.out:
        args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

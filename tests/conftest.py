"""Shared fixtures: a real theater-server per test in a private THEATER_HOME, and the CLI.

Every process a test starts is killed by pid at teardown (the server's descendants are
collected first), so nothing outlives its test. No TCP port is used unless a test asks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
import zmq

from theater import protocol
from theater.client import Client
from theater.errors import TheaterError, Unreachable
from theater.paths import Home

# Session fixtures that build real components with real toolchains (cached across sessions).
pytest_plugins = ("tests.toolchains",)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ACTORS = Path(__file__).resolve().parent / "actors"

# A shell without job control starts a background command with SIGINT ignored, and every
# process started from it inherits that: `theater run` would then not see the Ctrl-C some
# tests send it (they hung). The processes the tests start get it as a terminal gives it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def home() -> Iterator[Home]:
    # short: unix socket paths must stay under 108 bytes
    root = Path(tempfile.mkdtemp(prefix="th-", dir="/tmp"))
    try:
        yield Home(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class CLIResult:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode()


class Server:
    """A theater-server process on a private home, with any extra theater-server flags."""

    def __init__(self, home: Home, *flags: str) -> None:
        self.home = home
        self.flags = flags
        self.proc: subprocess.Popen[bytes] | None = None
        self.known: set[int] = set()

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--home", str(self.home.root), "--log-level", "debug",
             *self.flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log_tail()}"
            try:
                with Client(self.home, timeout=2) as c:
                    c.ping()
                self.remember()
                return self
            except Unreachable:
                time.sleep(0.05)
        raise AssertionError(f"server did not start: {self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def remember(self) -> None:
        """Notes every process the server started, to kill any that outlive the test."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.known |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.pid).children(recursive=True)

    def chain_pid(self) -> int | None:
        """The server's chain process, if one is running."""
        for p in self.descendants():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "-m chain" in " ".join(p.cmdline()) and pid_alive(p.pid):
                    return p.pid
        return None

    def fork_server(self) -> psutil.Process:
        """The server's worker fork server (``python -m worker serve``)."""
        return next(p for p in self.descendants() if cmdline(p)[2:4] == ["worker", "serve"])

    def spares(self) -> list[psutil.Process]:
        """The fork server's children not given an actor yet (a worker names its actor in its title)."""
        return [p for p in self.fork_server().children() if (line := cmdline(p)) and "--actor" not in line[0]]

    def spares_confined_ahead(self) -> set[int]:
        """The spares that confined themselves while they wait (worker.spare): seccomp is on."""
        return {p.pid for p in self.spares() if proc_status(p.pid).get("Seccomp") == "2"}

    def all_spares_confined_ahead(self) -> set[int]:
        """Waits until every spare is confined ahead (the fork server has started an actor with the
        usual view, and none with a wider one): the next usual actor takes one of these."""
        from worker.zygote import SPARES

        return wait_for(lambda: s if len(s := self.spares_confined_ahead()) >= SPARES else None, timeout=60,
                        what=f"{SPARES} spares confined ahead")

    def log_tail(self, n: int = 40) -> str:
        log = self.home.logs / "server.log"
        return "\n".join(log.read_text().splitlines()[-n:]) if log.exists() else "(no log)"

    def client(self, timeout: float = 30) -> Client:
        return Client(self.home, timeout=timeout)

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 60) -> CLIResult:
        return run_cli(self.home, *args, input=input, timeout=timeout)

    def stop(self, timeout: float = 15) -> None:
        self.remember()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_all(self.known)


def kill_all(pids: set[int], wait: float = 5) -> None:
    """SIGKILLs those of ``pids`` still alive (only processes this test started)."""
    procs = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            p.kill()
            procs.append(p)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=wait)


def run_cli(home: Home, *args: str, input: bytes | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> CLIResult:
    p = subprocess.run([sys.executable, "-m", "theater", "--home", str(home.root), *args], input=input,
                       capture_output=True, timeout=timeout, env=env, cwd=ROOT)
    return CLIResult(p.returncode, p.stdout, p.stderr.decode())


@pytest.fixture
def server(home: Home) -> Iterator[Server]:
    s = Server(home).start()
    try:
        yield s
    finally:
        s.stop()


@contextlib.contextmanager
def running(home: Home, *flags: str) -> Iterator[Server]:
    """A server on ``home`` (with theater-server ``flags``) for the ``with`` block: one of several a
    test starts in turn on the same home (what the previous one left is what the next one finds)."""
    s = Server(home, *flags).start()
    try:
        yield s
    finally:
        s.stop()


@contextlib.contextmanager
def configured_server(home: Home, server_toml: str) -> Iterator[Server]:
    """A server on ``home`` started with ``server_toml`` as its ``server.toml``."""
    home.ensure()
    (home.root / "server.toml").write_text(server_toml)
    with running(home) as s:
        yield s


@contextlib.contextmanager
def server_of_its_own(kind: type[Server] = Server) -> Iterator[Server]:
    """A server on a home of its own, for fixtures wider than one test (``home`` is per test)."""
    root = Path(tempfile.mkdtemp(prefix="th-", dir="/tmp"))
    s = kind(Home(root)).start()
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def module_server() -> Iterator[Server]:
    """One server for a module's tests that only add actors of their own to it (fewer starts)."""
    with server_of_its_own() as s:
        yield s


def announced_url(proc: subprocess.Popen, what: str) -> str:
    """The URL a child prints on stderr (``... listening on URL``) once it listens; the rest of
    its stderr is drained, not kept. A child that ends or says something else is killed."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on " in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return line.split("listening on ", 1)[1].strip()
    kill_all({proc.pid})
    proc.wait()
    raise AssertionError(f"{what} did not say where it listens")


def wait_for(predicate, timeout: float = 10, interval: float = 0.05, what: str = "condition"):
    """Polls ``predicate`` until it returns something truthy; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def send_in_thread(server: Server, actor: str, message: bytes) -> tuple[threading.Thread, dict[str, Any]]:
    """A client's one-way message sent from a thread: its answer comes once the actor has run it
    and the chain holds the call. The result: {"ok": True} or {"error": the TheaterError}."""
    def send(c: Client) -> bool:
        c.send(actor, message)
        return True
    return _in_thread(server, "ok", send)


def request_in_thread(server: Server, actor: str, message: bytes) -> tuple[threading.Thread, dict[str, Any]]:
    """A client's request made from a thread. The result: {"reply": ...} or {"error": the TheaterError}."""
    return _in_thread(server, "reply", lambda c: c.request(actor, message))


def _in_thread(server: Server, key: str, call: Callable[[Client], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            with server.client(timeout=180) as c:
                result[key] = call(c)
        except TheaterError as e:
            result["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, result


def cmdline(p: psutil.Process) -> list[str]:
    """A process's command line; [] for one gone or a zombie (a worker or spare that just ended)."""
    try:
        return p.cmdline()
    except psutil.NoSuchProcess:
        return []


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict ({} for a process gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def pid_alive(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


os.environ.pop("THEATER_HOME", None)
os.environ.pop("THEATER_SERVER", None)


def cli_start(server: Server, manifest: Path) -> str:
    """`theater start MANIFEST --json`; the new actor's id."""
    r = server.cli("start", str(manifest), "--json")
    assert r.code == 0, r.err
    return orjson.loads(r.out)["id"]


def cli_events(server: Server, actor: str) -> list[dict[str, Any]]:
    """`theater events ID --json`."""
    r = server.cli("events", actor, "--json")
    assert r.code == 0, r.err
    return orjson.loads(r.out)


class OpsServer(Server):
    """A theater-server as an operator runs it: its own environment and flags, stdout and stderr
    kept in files, ready once ``run/server.json`` says where it listens (so a TCP ``--listen``,
    with no unix socket to ping, works too)."""

    def __init__(self, home: Home, *flags: str, env: dict[str, str] | None = None,
                 log_level: str = "debug") -> None:
        super().__init__(home, *flags)
        self.env = {**os.environ, **(env or {})}
        self.log_level = log_level
        self.out = Path(tempfile.mkdtemp(prefix="th-out-", dir="/tmp"))
        self._kept: dict[str, str] = {}

    def start(self) -> OpsServer:
        with open(self.out / "stdout", "wb") as out, open(self.out / "stderr", "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "supervisor", "--home", str(self.home.root), "--log-level", self.log_level,
                 *self.flags], stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=ROOT, env=self.env)
        wait_for(lambda: self.proc is not None and (self.proc.poll() is not None or self.info()), timeout=30,
                 what="run/server.json")
        assert self.proc.poll() is None, f"server exited: {self.stderr}"
        self.remember()
        return self

    def info(self) -> dict[str, Any] | None:
        """What the server says in run/server.json (pid, listen, metrics), once it listens."""
        try:
            return orjson.loads((self.home.run / "server.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None

    @property
    def stdout(self) -> str:
        return self._kept.get("stdout") or (self.out / "stdout").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self._kept.get("stderr") or (self.out / "stderr").read_text(errors="replace")

    def stop(self, timeout: float = 15) -> None:
        """Stops it (as Server does); what it printed stays readable."""
        super().stop(timeout)
        if self.out.exists():
            self._kept = {"stdout": self.stdout, "stderr": self.stderr}
            shutil.rmtree(self.out, ignore_errors=True)


def run_server(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> CLIResult:
    """`theater-server ARGS` run to its end (for options that make it exit)."""
    p = subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True, timeout=timeout,
                       env={**os.environ, **(env or {})}, cwd=ROOT, stdin=subprocess.DEVNULL)
    return CLIResult(p.returncode, p.stdout, p.stderr.decode())


def refuses_a_port_in_use(home: Home, option: str) -> None:
    """``theater-server OPTION 127.0.0.1:PORT`` with PORT taken: one line naming it, and no start."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        one_line_error(run_server("--home", str(home.root), option, f"127.0.0.1:{port}"), "theater-server: ",
                       f"127.0.0.1:{port}", "cannot listen")
    finally:
        taken.close()


def one_line_error(r: CLIResult, prefix: str, *needles: str, code: int = 2) -> str:
    """Exactly one clear line on stderr starting with ``prefix``, naming every needle; exit ``code``."""
    detail = f"exit {r.code}, stderr {r.err!r}, stdout {r.out!r}"
    assert r.code == code, detail
    assert "Traceback" not in r.err and "[Errno" not in r.err, detail
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), detail
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# ---- a process of the workers' user (tests/rogue.py) ------------------------------------------

# what the rogue gets: nothing of this environment (it becomes another user)
ROGUE_ENV = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"}


def rogue_command(user: str | None, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.rogue", *(["--user", user] if user else []), *args]


@pytest.fixture
def worker_user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the test creates a user for the workers (useradd) and runs a process as it")
    name = f"thr{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True,
                   capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture
def user_server(home: Home, worker_user: str) -> Iterator[Server]:
    s = Server(home, "--user", worker_user)
    try:
        yield s.start()
    finally:
        s.stop()


class RawService:
    """``python -m MODULE`` (the chain process, the gateway) with this test process as its server,
    and a DEALER socket of ours on its ``endpoint``; ``close`` asks it to shut down, else kills it."""

    def __init__(self, home: Home, module: str, endpoint: str, log_level: str) -> None:
        self.home = home
        self.log = home.root / f"{module.rsplit('.', 1)[-1]}.log"
        home.ensure()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", module, "--home", str(home.root),
                                          "--parent", str(os.getpid()), "--log-level", log_level],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=ROOT)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def send(self, header: dict[str, Any], *frames: bytes) -> None:
        self.sock.send_multipart(protocol.encode(header, *frames))

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self.send({"k": "shutdown"})
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.ctx.destroy(linger=0)

"""Starting, signalling and reaping the server's helper processes.

Two kinds: plain children started with a clean environment (the chain process, the
worker fork server), and actor workers, which the fork server forks and reaps and whose
pids and exit statuses it reports here. Supervision never calls subprocess or os.kill
itself: it goes through these classes, so tests can put fakes in their place.

What the helpers print goes into pipes the server reads (``OutputRelay``) and writes to its
log: no helper holds the log file, so it can be reopened (SIGHUP) and fail (disk full) in
one place.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil

from theater import grants
from theater.errors import UsageError
from theater.manifest import Backoff
from theater.paths import Home

from .restart import next_backoff

log = logging.getLogger("theater.server")

Later = Callable[[float, Callable[[], None]], Any]


def clean_env(home: Home) -> dict[str, str]:
    """What a child needs and nothing it could be confused or misled by."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "THEATER_HOME": str(home.root)}
    for name in ("PYTHONPATH", grants.PLUGINS_ENV):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class Child:
    """One helper process started by the server (``python -m <module>``); its stdout and stderr
    are a pipe the server reads (``output_fd``)."""

    def __init__(self, module: str, home: Home, args: list[str], pass_fds: tuple[int, ...] = (),
                 command: str | None = None) -> None:
        self.module = module
        self.command = command
        self.home = home
        self.args = args
        self.pass_fds = pass_fds
        self.proc: subprocess.Popen[bytes] | None = None
        self._work: tuple[float, int] | None = None     # CPU seconds and bytes read or written, last asked

    def working(self) -> bool:
        """Whether it used CPU or the disk since the last time this was asked (never, the first
        time): a helper slow to answer may be doing a long job (the chain process building an
        index of a large chains.db), not be stuck."""
        try:
            p = psutil.Process(self.pid) if self.pid else None
            if p is None:
                return False
            cpu, io = p.cpu_times(), p.io_counters()
        except psutil.Error:
            return False
        work = (cpu.user + cpu.system, io.read_bytes + io.write_bytes + io.read_chars)
        before, self._work = self._work, work
        return before is not None and work != before

    def start(self) -> None:
        cmd = [sys.executable, "-m", self.module, *([self.command] if self.command else []),
               "--home", str(self.home.root), *self.args]
        self.proc = subprocess.Popen(
            cmd, env=clean_env(self.home), cwd=self.home.root, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=self.pass_fds,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)

    def output_fd(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def last_line(self) -> str:
        """The last line it wrote that nobody has read yet (its output is non-blocking)."""
        try:
            text = os.read(self.output_fd(), 1 << 16).decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:500] if lines else ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        """The exit status once the process has ended (reaping it), else None."""
        return self.proc.poll() if self.proc else 0

    def wait(self, timeout: float) -> None:
        """Waits for the process to end by itself, then SIGKILLs it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.1fs; killing it", self.module, timeout)
            self.proc.kill()
            self.proc.wait()


class Respawn:
    """Starts a helper, and again once it has died, from the server's tick: after a backoff that
    grows while it keeps dying soon after it started (``restart.next_backoff``). ``then`` runs
    after each start (relay its output, tell it what it must know)."""

    def __init__(self, what: str, child: Child, backoff: Backoff, later: Later, then: Callable[[], None]) -> None:
        self.what, self.child, self.backoff, self.later, self.then = what, child, backoff, later, then
        self.attempt = 0
        self.started = 0.0
        self.pending = False

    def start(self) -> None:
        self.child.start()
        self.started = time.monotonic()
        self.then()

    def check(self, stopping: bool) -> None:
        if stopping or self.pending or self.child.proc is None:
            return
        status = self.child.poll()
        if status is None:
            return
        delay, self.attempt = next_backoff(self.backoff, self.attempt, time.monotonic() - self.started)
        log.error("%s process exited (status %s); restarting it in %.1fs", self.what, status, delay)
        self.pending = True
        self.later(delay, self._again)

    def _again(self) -> None:
        self.pending = False
        self.start()


class ForkServer:
    """The worker fork server (``python -m worker``) and the actor processes it forks."""

    def __init__(self, home: Home, log_args: list[str], cgroups: list[str], sandbox: list[str] | None = None) -> None:
        self.home = home
        self.log_args = log_args        # --log-level L [--log-journal]
        self.cgroups = cgroups          # parents each worker makes its own cgroup in
        self.sandbox = sandbox or []     # --sandbox LAYERS [--seccomp-log] (theater.sandbox)
        self.sock: socket.socket | None = None
        self.child: Child | None = None

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # workers inherit the fork server's output: a pipe the server reads, never the log file
        # itself (a worker, maybe running as another user, must not hold the server's files)
        args = ["--fd", str(theirs.fileno()), *self.log_args, *self.sandbox]
        for parent in self.cgroups:
            args += ["--cgroup", parent]
        self.child = Child("worker", self.home, args, pass_fds=(theirs.fileno(),), command="serve")
        self.child.start()
        theirs.close()
        ours.setblocking(False)
        self.sock = ours

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    @property
    def pid(self) -> int | None:
        return self.child.proc.pid if self.child is not None and self.child.proc is not None else None

    def spawn(self, actor_id: str, name: str, component: str, fuel: bool, confine: dict[str, Any]) -> None:
        """Forks a worker for the actor; ``confine`` is what it does to itself first (see worker/zygote)."""
        assert self.sock is not None
        self.sock.send(orjson.dumps({"op": "spawn", "actor": actor_id, "name": name, "component": component,
                                     "fuel": fuel, "confine": confine}))

    def ping(self) -> None:
        """Asks the fork server to say it is serving (``{"op": "pong"}`` among the reports)."""
        assert self.sock is not None
        self.sock.send(orjson.dumps({"op": "ping"}))

    def reports(self) -> list[dict[str, Any]]:
        """Everything the fork server has told us since the last call; [{"op": "gone"}] if it died."""
        assert self.sock is not None
        out = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return out
            except ConnectionResetError:
                data = b""
            if not data:
                out.append({"op": "gone"})
                return out
            out.append(orjson.loads(data))

    def poll(self) -> int | None:
        return self.child.poll() if self.child else 0

    def output_fd(self) -> int:
        assert self.child is not None
        return self.child.output_fd()

    def stop(self, timeout: float) -> None:
        """Closing our end of the socket tells the fork server to exit."""
        if self.sock:
            self.sock.close()
            self.sock = None
        if self.child:
            self.child.wait(timeout)

    @staticmethod
    def signal(pid: int, sig: int) -> bool:
        """Signals a worker; False if it is already gone."""
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False


class OutputRelay:
    """Copies what a helper and its workers write (their log lines) into the server's log, at
    most ``MAX_LINES`` a second: a worker that floods its output cannot flood the log."""

    MAX_LINES = 200

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.partial = b""
        self.window = 0.0
        self.lines = 0
        self.dropped = 0

    def read(self, fd: int) -> bool:
        """Copies what is there; False at end of file (the fork server is gone)."""
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        now = time.monotonic()
        if now - self.window >= 1.0:
            if self.dropped:
                self.write(f"theater-server: {self.dropped} worker log lines dropped (over {self.MAX_LINES}/s)")
            self.window, self.lines, self.dropped = now, 0, 0
        rest = self.partial + data
        if (room := self.MAX_LINES - self.lines) > 0:
            lines = rest.split(b"\n", room)        # the lines there is room for, and the rest whole
            rest = lines.pop()
            self.lines += len(lines)
            for line in lines:
                self.write(line[:4096].decode(errors="replace"))
        # past the budget, lines are counted, not split one by one: a worker writing millions a
        # second took 65% of the server's CPU in this loop
        if (n := rest.count(b"\n")) > 0:
            self.dropped += n
            rest = rest[rest.rindex(b"\n") + 1:]
        self.partial = rest[-4096:]
        return True

    def drain(self, fd: int) -> None:
        """Copies what is left once the writer has exited (up to its end of file)."""
        for _ in range(64):
            if not self.read(fd):
                return


class Outputs:
    """The helpers' output pipes the loop watches (``poller``), each with its own relay."""

    def __init__(self, poller: Any, write: Callable[[str], None]) -> None:
        self.poller = poller
        self.write = write
        self.relays: dict[int, OutputRelay] = {}

    def __contains__(self, fd: object) -> bool:
        return fd in self.relays

    def watch(self, fd: int) -> int:
        self.relays[fd] = OutputRelay(self.write)
        self.poller.register(fd, 1)         # POLLIN
        return fd

    def read(self, fd: int) -> None:
        """Copies what ``fd`` holds; stops watching it at its end (its writers are gone)."""
        if not self.relays[fd].read(fd):
            self.unwatch(fd)

    def unwatch(self, fd: int, drain: bool = False) -> None:
        """Stops watching ``fd`` (after copying what is left, if ``drain``: its writer has exited)."""
        relay = self.relays.pop(fd, None)
        if relay is not None:
            self.poller.unregister(fd)
            if drain:
                relay.drain(fd)


def unlink_socket(path: Path) -> None:
    """Removes a socket an earlier server left (or whatever file is there); a directory in its
    place is the operator's to remove."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise UsageError(f"{path}: cannot put the server's socket there: {e.strerror}") from None


def describe_status(status: int) -> tuple[str, int]:
    """('exit', code) or ('signal', signum) from a waitpid status."""
    if os.WIFSIGNALED(status):
        return "signal", os.WTERMSIG(status)
    return "exit", os.waitstatus_to_exitcode(status)

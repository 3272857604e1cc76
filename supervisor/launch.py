"""Starting, signalling and reaping the server's helper processes.

Two kinds: plain children started with a clean environment (the chain process, the
worker fork server), and actor workers, which the fork server forks and reaps and whose
pids and exit statuses it reports here. Supervision never calls subprocess or os.kill
itself: it goes through these classes, so tests can put fakes in their place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import orjson

from theater.logsink import LogSink
from theater.paths import Home

log = logging.getLogger("theater.server")


def clean_env(home: Home) -> dict[str, str]:
    """What a child needs and nothing it could be confused or misled by."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "THEATER_HOME": str(home.root)}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


class Child:
    """One helper process started by the server (``python -m <module>``)."""

    def __init__(self, module: str, home: Home, args: list[str], log_file: IO[Any] | None,
                 pass_fds: tuple[int, ...] = (), command: str | None = None, piped: bool = False) -> None:
        self.module = module
        self.command = command
        self.piped = piped          # stdout/stderr into a pipe the server reads (untrusted children)
        self.home = home
        self.args = args
        self.log_file = log_file
        self.pass_fds = pass_fds
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", self.module, *([self.command] if self.command else []),
               "--home", str(self.home.root), *self.args]
        out: Any = subprocess.PIPE if self.piped else (self.log_file or None)
        self.proc = subprocess.Popen(
            cmd, env=clean_env(self.home), cwd=self.home.root, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT if self.piped else out, pass_fds=self.pass_fds,
        )
        if self.piped:
            assert self.proc.stdout is not None
            os.set_blocking(self.proc.stdout.fileno(), False)

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


class ForkServer:
    """The worker fork server (``python -m worker``) and the actor processes it forks."""

    def __init__(self, home: Home, log_level: str, log_file: IO[Any] | None, cgroups: list[str]) -> None:
        self.home = home
        self.log_level = log_level
        self.log_file = log_file
        self.cgroups = cgroups          # parents each worker makes its own cgroup in
        self.sock: socket.socket | None = None
        self.child: Child | None = None

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # workers inherit the fork server's output: a pipe the server reads, never the log file
        # itself (a worker, maybe running as another user, must not hold the server's files)
        args = ["--fd", str(theirs.fileno()), "--log-level", self.log_level]
        for parent in self.cgroups:
            args += ["--cgroup", parent]
        self.child = Child("worker", self.home, args, self.log_file, pass_fds=(theirs.fileno(),),
                           command="serve", piped=True)
        self.child.start()
        theirs.close()
        ours.setblocking(False)
        self.sock = ours

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def spawn(self, actor_id: str, name: str, component: str, fuel: bool, confine: dict[str, Any]) -> None:
        """Forks a worker for the actor; ``confine`` is what it does to itself first (see worker/zygote)."""
        assert self.sock is not None
        self.sock.send(orjson.dumps({"op": "spawn", "actor": actor_id, "name": name, "component": component,
                                     "fuel": fuel, "confine": confine}))

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
        assert self.child is not None and self.child.proc is not None and self.child.proc.stdout is not None
        return self.child.proc.stdout.fileno()

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
    """Copies what workers write (their log lines) into the server's log, at most
    ``MAX_LINES`` a second: a worker that floods its output cannot flood the log."""

    MAX_LINES = 200

    def __init__(self, sink: IO[Any] | None) -> None:
        self.sink = sink
        self.out: LogSink | None = None
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
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-4096:]
        now = time.monotonic()
        if now - self.window >= 1.0:
            if self.dropped:
                self._write(f"theater-server: {self.dropped} worker log lines dropped (over {self.MAX_LINES}/s)")
            self.window, self.lines, self.dropped = now, 0, 0
        for line in lines:
            if self.lines < self.MAX_LINES:
                self.lines += 1
                self._write(line[:4096].decode(errors="replace"))
            else:
                self.dropped += 1
        return True

    def _write(self, text: str) -> None:
        if self.out is None:            # a line that cannot be written (a full disk) is dropped, and counted
            self.out = LogSink((self.sink or sys.stdout).fileno())
        self.out.write_line(text)


def unlink_socket(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def describe_status(status: int) -> tuple[str, int]:
    """('exit', code) or ('signal', signum) from a waitpid status."""
    if os.WIFSIGNALED(status):
        return "signal", os.WTERMSIG(status)
    return "exit", os.waitstatus_to_exitcode(status)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"

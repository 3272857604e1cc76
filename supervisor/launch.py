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
                 pass_fds: tuple[int, ...] = (), command: str | None = None) -> None:
        self.module = module
        self.command = command
        self.home = home
        self.args = args
        self.log_file = log_file
        self.pass_fds = pass_fds
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0

    def start(self) -> None:
        cmd = [sys.executable, "-m", self.module, *([self.command] if self.command else []),
               "--home", str(self.home.root), *self.args]
        self.proc = subprocess.Popen(
            cmd, env=clean_env(self.home), cwd=self.home.root, stdin=subprocess.DEVNULL,
            stdout=self.log_file or None, stderr=self.log_file or None, pass_fds=self.pass_fds,
        )
        self.started_at = time.monotonic()

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

    def __init__(self, home: Home, log_level: str, log_file: IO[Any] | None) -> None:
        self.home = home
        self.log_level = log_level
        self.log_file = log_file
        self.sock: socket.socket | None = None
        self.child: Child | None = None

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.child = Child("worker", self.home, ["--fd", str(theirs.fileno()), "--log-level", self.log_level],
                           self.log_file, pass_fds=(theirs.fileno(),), command="serve")
        self.child.start()
        theirs.close()
        ours.setblocking(False)
        self.sock = ours

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def spawn(self, actor_id: str, name: str, confine: dict[str, Any]) -> None:
        """Forks a worker for the actor; ``confine`` is what it does to itself first (see worker/zygote)."""
        assert self.sock is not None
        self.sock.send(orjson.dumps({"op": "spawn", "actor": actor_id, "name": name, "confine": confine}))

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

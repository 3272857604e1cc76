"""Running one program for the ``filesystem`` handler's ``execute-command``: no shell, a clean
environment, a working directory given as a descriptor, a timeout, bounded output.

The program is started in a session of its own, so that at the end (normal exit, timeout,
or the actor asked to stop) its whole process group is killed; and the worker is the
subreaper of what it starts (``theater._linux.adopt_orphans``), so a job the program put in
a group or session of its own (``setsid``, a shell's ``set -m``) becomes the worker's child
when its parent ends, and is killed too: nothing it started outlives the call. While it runs
the worker keeps serving its sockets (``serve``).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from theater import _linux

# Where a bare program name is looked up.
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# What a program gets of an environment: the fixed PATH, and git told to skip /etc/gitconfig,
# which is outside the worker's view (git stops at a system config it cannot read)
ENVIRONMENT = {"PATH": SAFE_PATH, "GIT_CONFIG_NOSYSTEM": "1"}
# Output kept per stream; the rest is read and dropped (the result and its event stay small).
MAX_OUTPUT = 1 << 20
# How often the sockets are served while the program runs.
SERVE_EVERY = 0.05
# How long killing what is left may take (each kill may hand us the killed one's children).
KILL_WITHIN = 5.0


@dataclass
class Outcome:
    exit_code: int | None          # None: killed at the timeout
    stdout: str
    stderr: str


def run(argv: list[str], cwd_fd: int, timeout: float, serve: Callable[[float], None]) -> Outcome:
    """Runs ``argv`` in the directory ``cwd_fd``; ``serve(seconds)`` serves the worker's sockets
    between reads (and may raise to abandon the program, which is then killed)."""
    # The child changes into /proc/self/fd/N before it closes inherited descriptors, so the
    # directory is the one the descriptor holds, whatever its path has become since.
    proc = subprocess.Popen(argv, cwd=f"/proc/self/fd/{cwd_fd}", env=ENVIRONMENT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stderr is not None
    out = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    dropped = dict.fromkeys(out, 0)
    end = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            for stream in out:
                sel.register(stream, selectors.EVENT_READ)
            while sel.get_map() and time.monotonic() < end:
                for key, _ in sel.select(min(SERVE_EVERY, max(0.0, end - time.monotonic()))):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf = out[key.fileobj]
                    room = MAX_OUTPUT - len(buf)
                    buf += chunk[:room]
                    dropped[key.fileobj] += max(0, len(chunk) - room)
                serve(0)
        while proc.poll() is None and time.monotonic() < end:      # output closed, program still running
            serve(min(SERVE_EVERY, max(0.0, end - time.monotonic())))
        code = proc.poll()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)          # the program's group, whatever it left running
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        _kill_strays()
    return Outcome(code, *(_text(out[s], dropped[s]) for s in (proc.stdout, proc.stderr)))


def _kill_strays() -> None:
    """Kills this worker's remaining children, and their groups: what a program left running
    outside its group, adopted when its parent ended (the worker starts nothing else); their
    own children come to the worker as they die, and go in the next round."""
    end = time.monotonic() + KILL_WITHIN
    while (strays := _linux.kill_children()) and time.monotonic() < end:
        for pid in strays:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _text(data: bytearray, dropped: int) -> str:
    text = data.decode("utf-8", "replace")
    return text + f"\n[{dropped} more bytes not kept]" if dropped else text

"""The web console: ``theater-server --console HOST:PORT`` (off by default; docs/console.md).

A read-only view of the server in a browser, served by a process of its own that the server
starts, restarts when it dies (with a backoff) and stops: the standard library's HTTP server,
pages rendered with Jinja2 (autoescape on: actors choose what their events hold, ``<script>``
included), and the same data as a JSON API. It is a client of the server like the CLI: its
data comes from management requests over the console endpoint of the management socket
(``run/console.sock``), never from the loop's objects. In its own process its page renders
and event decoding never take the server's GIL from the requests it relays. The server binds
the HTTP port itself (a bad address stops it before anything starts, and the URL survives a
console restart) and hands the listening socket down. Off, it costs nothing: no process, no
socket, and neither Jinja2 nor the HTTP server is imported.

    __init__.py  the server's side: check the address, bind, start, restart, stop
    process.py   the console process: the hub, the HTTP server, the renderer (``python -m supervisor.console``)
    hub.py       the one connection to the server (a thread): requests, live pages, samples
    samples.py   memory, CPU and events/s over the last minutes
    web.py       HTTP: the server, its handler, live streams, security headers
    auth.py      who may read: loopback names, or the access token off loopback
    views.py     the pages and the JSON API
    render.py    how events and values are shown
    templates/   Jinja2 templates; static/: the pages' script and style (no build step)
"""

from __future__ import annotations

import importlib.util
import os
import socket

from theater import console_token
from theater.endpoints import host_port, is_loopback
from theater.errors import UsageError
from theater.manifest import Backoff
from theater.paths import Home

from ..launch import Child, Later, Outputs, Respawn

# Restarts of a console process that died: 0.2 s doubling to 10 s (it starts over once a
# console ran longer than that).
BACKOFF = Backoff(min=0.2, max=10.0, jitter=0.2)


def parse_address(value: str) -> tuple[str, int]:
    return host_port(value, "--console", 8470)


class Console:
    """The console of one server: ``listen`` (before the server opens, so a bad address stops it
    before anything starts), ``start`` (once the console endpoint is bound), ``check`` (from the
    server's tick), ``close``."""

    def __init__(self, home: Home, host: str, port: int, require_token: bool) -> None:
        self.home, self.host, self.port = home, host, port
        self.require_token = require_token
        self.url = ""
        self.sock: socket.socket | None = None
        self.child: Child | None = None
        self.outputs: Outputs | None = None     # the server's, once its loop runs: our output goes there
        self._out: int | None = None
        self.respawn: Respawn | None = None
        self._closed = False

    @classmethod
    def configure(cls, home: Home, value: str, token: bool) -> Console:
        """Checks ``--console VALUE`` (and ``--console-token``) before anything starts."""
        host, port = parse_address(value)
        if importlib.util.find_spec("jinja2") is None:
            raise UsageError("--console needs the jinja2 package: pip install 'theater[console]'")
        require = token or not is_loopback(host)
        if require and console_token.read(home) is None:
            why = "--console-token was given" if token else f"{host} is reachable from other hosts"
            raise UsageError(f"--console {value}: {why}, so the console needs an access token, and {home.root} "
                             f"has none yet: run `theater console --token --home {home.root}` (docs/console.md)")
        return cls(home, host, port, require)

    def listen(self) -> str:
        """Binds the HTTP port; the console's URL, with the port bound."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
        except OSError as e:
            sock.close()
            raise UsageError(f"--console {self.host}:{self.port}: cannot listen there: {e.strerror or e}") from None
        self.sock = sock
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{sock.getsockname()[1]}/"
        return self.url

    def start(self, log_args: list[str], later: Later) -> None:
        """Starts the console's process; the server has bound ``home.console_endpoint``."""
        assert self.sock is not None
        fd = self.sock.fileno()
        args = ["--parent", str(os.getpid()), "--fd", str(fd), *log_args]
        self.child = Child("supervisor.console", self.home, args + (["--token"] if self.require_token else []),
                           pass_fds=(fd,))
        self.respawn = Respawn("console", self.child, BACKOFF, later, self.watch_output)
        self.respawn.start()

    def watch_output(self, outputs: Outputs | None = None) -> None:
        """Relays the console process's output into the server's log (once the loop runs)."""
        self.outputs = outputs or self.outputs
        if self.outputs is None or self.child is None or self.child.proc is None:
            return
        if self._out is not None:
            self.outputs.unwatch(self._out, drain=True)
        self._out = self.outputs.watch(self.child.output_fd())

    def check(self, stopping: bool) -> None:
        """Restarts the console process (after its backoff) if it has died."""
        if self.respawn is not None:
            self.respawn.check(stopping)

    def close(self, timeout: float = 5.0) -> None:
        """Stops the console process (its pages are answered: the server is stopping) and the port."""
        if self._closed:
            return
        self._closed = True
        if self.child is not None and self.child.proc is not None and self.child.poll() is None:
            self.child.proc.terminate()
            self.child.wait(timeout)
        if self.outputs is not None and self._out is not None:
            self.outputs.unwatch(self._out, drain=True)
        if self.sock is not None:
            self.sock.close()


__all__ = ["Console", "parse_address"]

"""The web console: ``theater-server --console HOST:PORT`` (off by default; docs/console.md).

A read-only view of the server in a browser, served from threads of the server's own process
by the standard library's HTTP server, pages rendered with Jinja2 (autoescape on: actors
choose what their events hold, ``<script>`` included), and the same data as a JSON API. It is
a client of the server like the CLI: its data comes from management requests over an
in-process endpoint of the management socket, never from the loop's objects (``hub``). Off,
it costs nothing: no thread, no socket, and neither Jinja2 nor the HTTP server is imported.

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
import threading
from pathlib import Path
from typing import Any

import zmq

from theater import console_token
from theater.endpoints import host_port, is_loopback
from theater.errors import UsageError
from theater.paths import Home

HERE = Path(__file__).resolve().parent


def parse_address(value: str) -> tuple[str, int]:
    return host_port(value, "--console", 8470)


class Console:
    """The console of one server: ``listen`` (before the server opens, so a bad address stops it
    before anything starts), ``start`` (once the management socket is bound), ``close``."""

    def __init__(self, home: Home, host: str, port: int, require_token: bool) -> None:
        self.home, self.host, self.port = home, host, port
        self.require_token = require_token
        self.url = ""
        self.httpd: Any = None
        self.hub: Any = None
        self.thread: threading.Thread | None = None
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
        from .web import ConsoleServer
        try:
            self.httpd = ConsoleServer((self.host, self.port), None)
        except OSError as e:
            raise UsageError(f"--console {self.host}:{self.port}: cannot listen there: {e.strerror or e}") from None
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.httpd.server_address[1]}/"
        return self.url

    def start(self, ctx: zmq.Context, management: zmq.Socket) -> None:
        """Serves: the hub connects to ``management`` in-process (bound here, beside --listen)."""
        from . import views
        from .auth import Guard
        from .hub import ENDPOINT, Hub
        from .web import App
        management.bind(ENDPOINT)
        self.hub = Hub(ctx)
        self.httpd.app = App(self.hub, Guard(self.home, self.require_token), views.routes, _renderer(),
                             _static_files())
        self.hub.start()
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.25},
                                       name="console-http", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stops serving; when this returns no thread or socket of the console is left (the
        server's ZeroMQ context may be destroyed next)."""
        if self._closed:
            return
        self._closed = True
        if self.thread is not None:
            self.httpd.shutdown()                 # no new connections
        if self.hub is not None:
            self.hub.stop()                       # waiting pages are answered, live pages end
        if self.httpd is not None:
            self.httpd.hang_up()                  # idle connections too
            self.httpd.server_close()             # joins the connections' threads
        if self.hub is not None:
            self.hub.release()


def _renderer() -> Any:
    import jinja2

    from . import render
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(size=render.size, when=render.when, seconds=render.seconds, short=lambda h: (h or "")[:12])

    def rendered(name: str, **context: Any) -> bytes:
        return env.get_template(name).render(**context).encode()
    return rendered


def _static_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (HERE / "static").iterdir() if p.suffix in (".js", ".css", ".svg")}


__all__ = ["Console", "parse_address"]

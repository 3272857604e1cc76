"""The console's process: the hub on the server's console endpoint, and the HTTP server on the
listening socket the server handed down. It serves until SIGTERM (the server stopping it) or
the server's death (PR_SET_PDEATHSIG), then answers every waiting page and ends."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path
from typing import Any

import zmq

from theater.paths import Home

from . import views
from .auth import Guard
from .hub import Hub
from .web import App, ConsoleServer

HERE = Path(__file__).resolve().parent


def serve(home: Home, listening: socket.socket, require_token: bool) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C reaches the server, which stops us
    ctx = zmq.Context()
    hub = Hub(ctx, home.console_endpoint)
    httpd = ConsoleServer(listening, App(hub, Guard(home, require_token), views.routes, _renderer(),
                                         _static_files()))
    hub.start()
    http = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.25}, name="console-http")
    http.start()
    while not stop.wait(1.0):
        pass
    httpd.shutdown()                 # no new connections
    http.join()
    hub.stop()                       # waiting pages are answered, live pages end
    httpd.hang_up()                  # idle connections too
    httpd.server_close()             # joins the connections' threads
    hub.release()
    ctx.destroy(linger=0)


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

"""The console's HTTP side: the standard library's threading HTTP server, GET only.

Each connection is served by a thread of its own and closed after one answer (HTTP/1.0: no
idle keep-alive connection can hold a thread, or the server's stop); a live page's stream
(server-sent events) is the one answer that lasts. Every answer carries a strict
Content-Security-Policy (scripts and styles from this console's own files only, nothing
inline, no frames, no other origin), ``nosniff`` and ``no-store``. Routes are in ``views``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from theater.errors import TheaterError, UsageError

from .auth import Guard
from .hub import CALL_TIMEOUT, Hub

log = logging.getLogger("theater.console")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# A connection that sends nothing for this long is closed (its thread freed).
IDLE_TIMEOUT = 30.0
# Connections served at once (a thread each, before any auth); more are answered 503 and closed.
MAX_CONNECTIONS = 256
# A live page's stream says something at least this often, so a closed page is noticed.
KEEPALIVE = 15.0

# HTTP statuses for the errors a request can end in (theater/errors.py codes).
STATUS = {"not_found": 404, "usage": 400, "protocol": 400, "refused": 409, "timeout": 504, "unreachable": 503}


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    handler: Handler

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        """An integer query argument from ``lo`` to ``hi``; UsageError (400) says what is allowed."""
        text = self.arg(name)
        if text is None or text == "":
            return default
        try:
            value = int(text, 10)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise UsageError(f"?{name}={text[:40]!r}: expected an integer from {lo} to {hi}")
        return value


@dataclass
class Response:
    status: int
    body: bytes
    type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS), "application/json")


class Routes:
    """``(pattern, function)`` pairs; a function takes the Request and the pattern's groups and
    returns a Response, or None once it has answered by itself (a stream)."""

    def __init__(self) -> None:
        self.table: list[tuple[re.Pattern[str], Callable[..., Response | None]]] = []

    def get(self, pattern: str) -> Callable[[Callable[..., Response | None]], Callable[..., Response | None]]:
        def add(fn: Callable[..., Response | None]) -> Callable[..., Response | None]:
            self.table.append((re.compile(pattern), fn))
            return fn
        return add

    def find(self, path: str) -> tuple[Callable[..., Response | None], tuple[str, ...]] | None:
        for pattern, fn in self.table:
            m = pattern.fullmatch(path)
            if m is not None:
                return fn, m.groups()
        return None


class Handler(BaseHTTPRequestHandler):
    server: ConsoleServer
    server_version = "theater-console"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def do_GET(self) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        req = Request(url.path, parse_qs(url.query, keep_blank_values=True), self)
        refusal = app.guard.check(self.headers, url.path, req.query)
        if refusal is not None:
            self.answer(Response(refusal.status, _line_page(refusal.message), "text/plain; charset=utf-8",
                                 refusal.headers), url.path)
            return
        found = app.routes.find(url.path)
        if found is None:
            self.answer(app.error(404, f"nothing at {url.path}", url.path), url.path)
            return
        fn, groups = found
        try:
            response = fn(app, req, *groups)
        except TheaterError as e:
            response = app.error(STATUS.get(e.code, 500), e.message, url.path)
        except Exception:
            log.exception("console: internal error on %s", url.path)
            response = app.error(500, "internal error (see the server log)", url.path)
        if response is not None:
            self.answer(response, url.path)

    def answer(self, r: Response, path: str) -> None:
        self.send_response(r.status)
        self.send_header("Content-Type", r.type)
        self.send_header("Content-Length", str(len(r.body)))
        self._common_headers()
        for name, value in r.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(r.body)

    def _common_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")

    def stream(self, hub: Hub, actor: str | None) -> None:
        """Server-sent events for one live page, until it goes away or the console closes."""
        s = hub.open_stream(actor)
        try:
            s.ready.wait(CALL_TIMEOUT)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self._common_headers()
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            quiet = time.monotonic()
            while not hub.closed:
                try:
                    item = s.queue.get(timeout=1.0)
                except queue.Empty:
                    if time.monotonic() - quiet >= KEEPALIVE:
                        self.wfile.write(b": keepalive\n\n")
                        self.wfile.flush()
                        quiet = time.monotonic()
                    continue
                if item is None:
                    break
                self.wfile.write(b"event: " + item[0].encode() + b"\ndata: " + item[1] + b"\n\n")
                self.wfile.flush()
                quiet = time.monotonic()
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass                      # the page was closed
        finally:
            hub.close_stream(s)

    def log_message(self, format: str, *args: Any) -> None:
        # the access token is not logged, however its query is spelled (?%74oken= signs in too)
        line = re.sub(r"\?\S*", lambda m: "?..." if "token" in unquote(m.group(0)).lower() else m.group(0),
                      format % args)
        log.debug("console: %s %s", self.address_string(), line)


class ConsoleServer(ThreadingHTTPServer):
    app: App
    # Handler threads are joined when the server closes: none outlives the console (each ends
    # within IDLE_TIMEOUT, or at once for a stream, whose hub is stopped first).
    daemon_threads = False
    block_on_close = True

    def __init__(self, listening: socket.socket, app: App) -> None:
        """Serves on ``listening``: a socket the server bound (and still holds, for the next
        console process if this one dies)."""
        self.address_family = listening.family
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(listening.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listening

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = len(self._open) >= MAX_CONNECTIONS
            if not full:
                self._open.add(request)
        if full:        # a thread each, before any auth: a cap, not one thread per stranger
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def hang_up(self) -> None:
        """Ends every open connection, so that a thread waiting on an idle one (a browser opens
        some ahead of need) ends now rather than after IDLE_TIMEOUT."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@dataclass
class App:
    """What a route gets: the hub (the server's data), who may read, the pages' renderer."""

    hub: Hub
    guard: Guard
    routes: Routes
    render: Callable[..., bytes]
    static: dict[str, bytes]                 # the pages' script and style, by file name

    def error(self, status: int, message: str, path: str) -> Response:
        if path.startswith("/api/"):
            return json_response({"error": message, "status": status}, status)
        return Response(status, self.render("error.html", status=status, message=message))


def _line_page(message: str) -> bytes:
    """A refusal as one line of plain text (no template: it is shown before any check passes)."""
    return message.encode() + b"\n"

"""A client of theater-server's management API (what the CLI and scripts use).

    with Client(Home.resolve()) as c:
        actor = c.start("examples/counter/manifest.toml")["id"]
        print(c.request(actor, b"+1"))

Requests block until their answer (or ``timeout``); pushes the server sends meanwhile
(events of a subscription, channel messages) are kept for ``next_push``. A channel's messages
are acknowledged to the server as ``next_push`` hands them out (``channel_ack``): the actor
sends no more than ``protocol.CLIENT_WINDOW`` bytes this client has not read.

Over TCP the client speaks CURVE when this home trusts a key for the server's address
(``keys/servers/HOST:PORT.key``, see ``theater key --curve --client``), and must off
loopback. A refused handshake (a key the server does not know, or CURVE on one side only)
is reported at once, from the socket's monitor, rather than waited out as a timeout.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import zmq

from . import curve_keys, protocol
from . import manifest as manifests
from .digests import FileDigests, stamp
from .endpoints import is_loopback, tcp_host
from .errors import NoSuchComponent, ProtocolError, Refused, Timeout, Unreachable, UsageError, from_wire
from .events import Event
from .events import from_wire as event_from_wire
from .paths import Home

DEFAULT_TIMEOUT = 60.0
PING_TIMEOUT = 3.0


def hint(home: Home, endpoint: str | None = None) -> str:
    where = home.root if endpoint in (None, home.management_endpoint) else endpoint
    return (f"no theater server is running at {where} "
            f"(start one with `theater-server`, or use `theater run MANIFEST`)")


class Client:
    def __init__(self, home: Home, server: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.home = home
        self.timeout = timeout
        self.endpoint = server or os.environ.get("THEATER_SERVER") or home.management_endpoint
        if self.endpoint.startswith("tcp://"):
            tcp_host(self.endpoint)                 # a bad address is bad input, not a ZeroMQ error
            if self.endpoint.endswith(":*"):
                raise UsageError(f"server address {self.endpoint}: a client needs the server's port")
        elif not self.endpoint.startswith("ipc://"):
            raise UsageError(f"server address {self.endpoint!r}: expected ipc://PATH or tcp://HOST:PORT")
        elif not _listening(Path(self.endpoint.removeprefix("ipc://"))):
            raise Unreachable(hint(home, self.endpoint))
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        self.curve_key: str | None = None           # this client's public key, when it speaks CURVE
        self.monitor: zmq.Socket | None = None
        self.reached = False                        # a TCP connection was made once (see _monitored)
        if self.endpoint.startswith("tcp://"):
            self.curve_key = _curve_client(self.sock, home, self.endpoint)
            self.monitor = self.sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_CONNECTED
                | zmq.EVENT_CONNECT_RETRIED)
        try:
            self.sock.connect(self.endpoint)
        except zmq.ZMQError as e:                   # e.g. a host name with a space in it
            self.close()
            raise UsageError(f"server address {self.endpoint}: {e.strerror}") from None
        self._ids = itertools.count(1)
        self.pushes: deque[tuple[dict[str, Any], list[bytes]]] = deque()
        self.unacked: dict[str, int] = {}          # channel -> bytes of its messages read, not acknowledged
        # called with each "compiling" push a start gets while its component compiles (see start)
        self.on_progress: Callable[[dict[str, Any]], None] | None = None
        self.digests = FileDigests()     # components this client sent: a start names them by digest

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
        self.sock.close(linger=0)

    def _poll(self, timeout_ms: float | None) -> bool:
        """Whether an answer is there within ``timeout_ms``; a refused connection or handshake
        raises at once."""
        if self.monitor is None:
            return bool(self.sock.poll(timeout_ms))
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            ready = dict(poller.poll(left))
            if self.sock in ready:
                return True
            if self.monitor in ready:
                # imported here: it imports asyncio (~40 ms at every CLI start)
                from zmq.utils.monitor import recv_monitor_message
                self._monitored(recv_monitor_message(self.monitor))
            elif deadline is not None and time.monotonic() >= deadline:
                return False

    def _monitored(self, event: dict[str, Any]) -> None:
        """Raises what a connection event means for this client: nothing listens there, or the
        server refused the handshake (a TCP connection made, then a retry, is a reconnection)."""
        where = f"the server at {self.endpoint}"
        if event["event"] == zmq.EVENT_CONNECTED:
            self.reached = True
            return
        if event["event"] == zmq.EVENT_CONNECT_RETRIED:
            if self.reached:        # a reconnection (after a refused handshake: its own event says why)
                return
            raise Unreachable(f"no theater server answers at {self.endpoint}: the connection was refused")
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            raise Refused(f"{where} refused this client's CURVE key {self.curve_key}: its operator must put it "
                          f"in keys/authorized/NAME.key on the server")
        known = curve_keys.server_key_file(self.home, self.endpoint)
        if event["value"] != zmq.Event.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            raise Refused(f"{where} failed the CURVE handshake (is {known} that server's public key?)")
        if self.curve_key is not None:
            raise Refused(f"{where} does not use CURVE, but this client has a key for it ({known}): remove it, "
                          f"or start the server with --curve")
        raise Refused(f"{where} requires CURVE: {_curve_how(self.endpoint)}")

    # ---- the wire ----------------------------------------------------------------------------

    def call(self, kind: str, *frames: bytes, timeout: float | None = None,
             **fields: Any) -> tuple[dict[str, Any], list[bytes]]:
        """Sends one request and returns the ok answer's (header, frames); raises what the server reported."""
        size = sum(len(f) for f in frames)
        if size > protocol.MAX_PAYLOAD:     # ZeroMQ would drop it, and us, without a word
            raise ProtocolError(f"{kind}: {size} bytes is over the {protocol.MAX_PAYLOAD}-byte limit of one message")
        rid = f"c{next(self._ids)}"
        try:
            msg = protocol.encode({"k": kind, "id": rid, **fields}, *frames)
        except orjson.JSONEncodeError:      # text from a command line that is not UTF-8
            raise UsageError(f"{kind}: an argument is not valid UTF-8 text") from None
        self.sock.send_multipart(msg)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll(remaining * 1000):
                if kind == "ping":
                    raise Unreachable(f"the theater server at {self.endpoint} is not responding")
                raise Timeout(f"no answer from the server within {self.timeout if timeout is None else timeout:g}s")
            header, data = protocol.decode(self.sock.recv_multipart())
            if header.get("re") == rid:
                if header["k"] == "error":
                    raise from_wire(header["code"], header["error"])
                return header, data
            if header.get("k") == "compiling":
                # a start waits for its component to compile, however long the server lets that take
                if self.on_progress is not None:
                    self.on_progress(header)
                deadline = max(deadline, time.monotonic() + (self.timeout if timeout is None else timeout))
            elif "re" not in header and header.get("k") != "keepalive":
                self.pushes.append((header, data))
                # the server is alive and our answer is behind these pushes: keep waiting
                deadline = max(deadline, time.monotonic() + PING_TIMEOUT)

    def next_push(self, timeout: float | None) -> tuple[dict[str, Any], list[bytes]] | None:
        """The next push (waiting up to ``timeout``), None if none came; a channel message handed
        out here counts as read (``_read``). The server's ``keepalive`` is not handed out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.pushes:
                push = self.pushes.popleft()
            elif not self._poll(None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000):
                return None
            else:
                try:
                    push = protocol.decode(self.sock.recv_multipart())
                except ProtocolError:
                    return None
            if push[0].get("k") != "keepalive":
                self._read(*push)
                return push

    def _read(self, header: dict[str, Any], data: list[bytes]) -> None:
        """Acknowledges what was read of a channel once that is half the window, or once nothing
        more waits here (the actor may be waiting for less than half a window of credit)."""
        ch = header.get("channel")
        if header["k"] == "channel_closed":
            self.unacked.pop(ch, None)
        if header["k"] != "channel_message" or not isinstance(ch, str):
            return
        read = self.unacked.get(ch, 0) + len(data[0])
        if read >= protocol.CLIENT_WINDOW // 2 or (read and not self.pushes and not self.sock.poll(0)):
            self.unacked.pop(ch, None)
            self.sock.send_multipart(protocol.encode({"k": "channel_ack", "channel": ch, "bytes": read}))
        else:
            self.unacked[ch] = read

    # ---- requests ----------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return self.call("ping", timeout=PING_TIMEOUT)[0]

    def start(self, manifest_path: str | Path, state: bytes | None = None) -> dict[str, Any]:
        """Validates a manifest here, then sends it with its component and initial state. While the
        server compiles the component (the first start of it), it says so every second
        (``on_progress``), and the wait goes on. A component file this client sent before and
        that is unchanged since is named by its digest, not read and sent again."""
        path = Path(manifest_path).absolute()
        m = manifests.load(path)
        init = state if state is not None else manifests.resolve_init_state(m, path.parent)
        fields = {"manifest": path.read_text(), "source": str(path), "base": str(path.parent),
                  "has_state": init is not None}
        rest = [init] if init is not None else []
        file = manifests.component_path(m, path.parent)
        if sha := self.digests.get(file):     # read and sent before: the server keeps it
            try:
                return self.call("start", b"", *rest, component_sha=sha, **fields)[0]
            except NoSuchComponent:
                self.digests.forget(file)
        before = stamp(file)
        header, _ = self.call("start", manifests.read_component(m, file), *rest, **fields)
        self.digests.remember(file, before, header["component"])
        return header

    def request(self, actor: str, message: bytes) -> bytes:
        _, frames = self.call("request", message, actor=actor)
        return frames[0] if frames else b""

    def send(self, actor: str, message: bytes) -> None:
        self.call("send", message, actor=actor)

    def state(self, actor: str) -> bytes | None:
        header, frames = self.call("state", actor=actor)
        return frames[0] if header.get("has_state") and frames else None

    def events(self, actor: str, since: int = 0, limit: int | None = None,
               types: list[str] | None = None) -> list[Event]:
        """Stored events from ``since``, fetching page after page until ``limit`` or the end (a
        page may be short, even empty, where a filter passed over many events: ``next`` goes on)."""
        out: list[Event] = []
        while True:
            want = None if limit is None else limit - len(out)
            header, frames = self.call("events", actor=actor, since=since, limit=want, types=types or [])
            out.extend(event_from_wire(header["actor"], m, d) for m, d in zip(header["events"], frames, strict=True))
            if not header.get("more") or (limit is not None and len(out) >= limit):
                return out
            since = header["next"]

    def inspect(self, actor: str) -> dict[str, Any]:
        return self.call("inspect", actor=actor)[0]["actor"]

    def stop(self, actor: str) -> dict[str, Any]:
        return self.call("stop", actor=actor)[0]

    def tools(self) -> list[dict[str, Any]]:
        """Running actors that offer MCP tools: [{id, name, status, tools: [...]}]."""
        return self.call("tools")[0]["actors"]

    def watch(self) -> str:
        """Subscribes to actors coming and going; ``actors_changed`` pushes follow (``next_push``)."""
        return self.call("watch")[0]["sub"]


def _listening(path: Path) -> bool:
    """Whether something accepts connections on a unix socket (a killed server leaves the file)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _curve_client(sock: zmq.Socket, home: Home, endpoint: str) -> str | None:
    """Sets up CURVE when this home trusts a key for ``endpoint`` (required off loopback); this
    client's public key, or None for a plain connection."""
    server_key = curve_keys.known_server_key(home, endpoint)
    if server_key is None:
        if is_loopback(tcp_host(endpoint)):
            return None
        raise UsageError(f"{endpoint} is not on loopback, so the server requires CURVE: {_curve_how(endpoint)}")
    pair = curve_keys.curve_pair(home, "client")
    if pair is None:
        raise UsageError(f"{endpoint}: this home has no CURVE client key yet: run `theater key --curve --client` "
                         f"and have the server's operator authorize the key it prints")
    sock.curve_publickey, sock.curve_secretkey = pair[0].encode(), pair[1].encode()
    sock.curve_serverkey = server_key.encode()
    return pair[0]


def _curve_how(endpoint: str) -> str:
    return (f"run `theater key --curve --client --server {endpoint} --server-key KEY` here, with the KEY "
            f"`theater key --curve` prints on the server, and have the server's operator authorize the key it "
            f"prints (docs/operations.md, Remote access)")

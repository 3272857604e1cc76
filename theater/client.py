"""A client of theater-server's management API (what the CLI and scripts use).

    with Client(Home.resolve()) as c:
        actor = c.start("examples/counter/manifest.toml")["id"]
        print(c.request(actor, b"+1"))

Requests block until their answer (or ``timeout``); pushes the server sends meanwhile
(events of a subscription, channel messages) are kept for ``next_push``.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

import zmq

from . import manifest as manifests
from . import protocol
from .endpoints import is_loopback, tcp_host
from .errors import ManifestError, ProtocolError, Timeout, Unreachable, from_wire
from .events import Event
from .events import from_wire as event_from_wire
from .paths import Home

DEFAULT_TIMEOUT = 60.0
PING_TIMEOUT = 3.0


def hint(home: Home) -> str:
    return (f"no theater server is running at {home.root} "
            f"(start one with `theater-server`, or use `theater run MANIFEST`)")


class Client:
    def __init__(self, home: Home, server: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.home = home
        self.timeout = timeout
        self.endpoint = server or os.environ.get("THEATER_SERVER") or home.management_endpoint
        if self.endpoint.startswith("ipc://") and not _listening(Path(self.endpoint.removeprefix("ipc://"))):
            raise Unreachable(hint(home))
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        if self.endpoint.startswith("tcp://"):
            _curve_client(self.sock, home, self.endpoint)
        self.sock.connect(self.endpoint)
        self._ids = itertools.count(1)
        self.pushes: deque[tuple[dict[str, Any], list[bytes]]] = deque()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close(linger=0)

    # ---- the wire ----------------------------------------------------------------------------

    def call(self, kind: str, *frames: bytes, timeout: float | None = None,
             **fields: Any) -> tuple[dict[str, Any], list[bytes]]:
        """Sends one request and returns the ok answer's (header, frames); raises what the server reported."""
        rid = f"c{next(self._ids)}"
        self.sock.send_multipart(protocol.encode({"k": kind, "id": rid, **fields}, *frames))
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.sock.poll(remaining * 1000):
                if kind == "ping":
                    raise Unreachable(f"the theater server at {self.endpoint} is not responding")
                raise Timeout(f"no answer from the server within {self.timeout if timeout is None else timeout:g}s")
            header, data = protocol.decode(self.sock.recv_multipart())
            if header.get("re") == rid:
                if header["k"] == "error":
                    raise from_wire(header["code"], header["error"])
                return header, data
            if "re" not in header:
                self.pushes.append((header, data))
                # the server is alive and our answer is behind these pushes: keep waiting
                deadline = max(deadline, time.monotonic() + PING_TIMEOUT)

    def next_push(self, timeout: float | None) -> tuple[dict[str, Any], list[bytes]] | None:
        if self.pushes:
            return self.pushes.popleft()
        if not self.sock.poll(None if timeout is None else timeout * 1000):
            return None
        try:
            return protocol.decode(self.sock.recv_multipart())
        except ProtocolError:
            return None

    # ---- requests ----------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return self.call("ping", timeout=PING_TIMEOUT)[0]

    def start(self, manifest_path: str | Path, state: bytes | None = None) -> dict[str, Any]:
        """Validates a manifest here, then sends it with its component and initial state."""
        path = Path(manifest_path).absolute()
        m = manifests.load(path)
        comp = path.parent / m.component
        try:
            component = comp.read_bytes()
        except OSError as e:
            raise ManifestError(f"{path}: component = {m.component!r}: cannot read {comp}: "
                                f"{e.strerror or e}") from None
        init = state if state is not None else manifests.resolve_init_state(m, path.parent)
        frames = [component] + ([init] if init is not None else [])
        header, _ = self.call("start", *frames, manifest=path.read_text(), source=str(path),
                              base=str(path.parent), has_state=init is not None)
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
        """Stored events from ``since``, fetching page after page until ``limit`` or the end."""
        out: list[Event] = []
        while True:
            want = None if limit is None else limit - len(out)
            header, frames = self.call("events", actor=actor, since=since, limit=want, types=types or [])
            metas = header["events"]
            out.extend(event_from_wire(header["actor"], m, d) for m, d in zip(metas, frames, strict=True))
            if not header.get("more") or not metas or (limit is not None and len(out) >= limit):
                return out
            since = metas[-1]["seq"] + 1

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


def _curve_client(sock: zmq.Socket, home: Home, endpoint: str) -> None:
    """CURVE keys for a remote server: ours in keys/curve/client.key_secret, its in keys/curve/server.key."""
    import zmq.auth

    if is_loopback(tcp_host(endpoint)):
        return
    curve = home.keys / "curve"
    secret, server = curve / "client.key_secret", curve / "server.key"
    if not secret.exists() or not server.exists():
        raise Unreachable(f"{endpoint} requires CURVE keys: put this client's key pair in {secret} "
                          f"(create it with `theater key --curve`) and the server's public key in {server}")
    public_key, secret_key = zmq.auth.load_certificate(secret)
    server_key, _ = zmq.auth.load_certificate(server)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public_key, secret_key, server_key

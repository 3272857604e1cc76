"""The gateway's loop: who is asking, what their grant allows, and the answers.

One ROUTER (``run/gateway.sock``). Every message carries its sender's pid, taken by the
kernel (``theater.peercred``). The server (our parent's pid, and only it) says which worker
pid runs which actor with which grants (``grant``) and when it exits (``revoke``). A worker's
request is served under the grant of its pid; a request from a pid with no grant waits
``GRANT_WAIT`` for one (the server's grant and the worker's first request travel on
different connections), then is refused (at once, beyond ``PER_WORKER`` of a process). HTTP
requests run on a thread pool (they wait on the network; the answers come back through an
inproc socket); MCP calls on the sessions' own asyncio loop (``mcp``), answering the same
way; store calls run here, one at a time, so the store needs no locks.

Answers: ``ok {value}`` (+ a frame for bytes), ``ok {denied}`` (outside the grant: the
worker records ``<handler>/permission-denied``), ``ok {err}`` (the call failed).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import zmq

from theater import grants, peercred, protocol
from theater._logging import Sparse
from theater.errors import ProtocolError
from theater.paths import Home
from theater.secrets import Secrets

from .egress import Denied, Egress, Failed, HttpGrant
from .mcp import McpGrant, Sessions
from .store import ContentStore, QuotaExceeded, StoreError

log = logging.getLogger("theater.gateway")

# How long a request from a pid the server has not granted yet waits for its grant.
GRANT_WAIT = 5.0
# HTTP requests in flight at once (each waits on the network in a thread of its own).
HTTP_THREADS = 16
# Requests one worker may have in flight: a worker makes one host call at a time; more is a
# worker misbehaving, and it must not take every thread.
PER_WORKER = 2
# Requests waiting for their process's grant: as many as a worker may have in flight, and at most
# this many in all; the rest are refused at once. Any process that reaches the socket and has no
# grant (a worker whose actor is granted none of the gateway's handlers) could have it hold all it
# sent for GRANT_WAIT, each request with its frames.
WAITING_MAX = 1024
# Refusals and malformed messages are logged one line a second at most (a flood, counted).
LOG_EVERY = 1.0
# Where the HTTP threads hand their answers to the loop.
RESULTS = "inproc://gateway-results"


@dataclass
class Grant:
    actor: str
    name: str
    http: HttpGrant | None
    store_max: int | None          # the store grant's max_bytes; None: no store grant
    mcp: McpGrant | None = None

    @classmethod
    def of(cls, header: dict[str, Any]) -> Grant:
        config = header["config"]
        http = config.get("http-client")
        store = config.get("store")
        mcp = config.get("mcp-client")
        return cls(header["actor"], header.get("name") or header["actor"],
                   HttpGrant.of(http) if isinstance(http, dict) else None,
                   int(store.get("max_bytes", grants.STORE_DEFAULT_MAX_BYTES)) if isinstance(store, dict) else None,
                   McpGrant.of(mcp) if isinstance(mcp, dict) else None)


Reply = list[bytes]


class Gateway:
    def __init__(self, home: Home, parent: int | None, secrets: Secrets, store_cap: int) -> None:
        self.home = home
        self.parent = parent
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        self.results = self.ctx.socket(zmq.PULL)
        self.results.bind(RESULTS)
        self.egress = Egress(secrets)
        self.store = ContentStore(home.store, store_cap)
        self.pool = ThreadPoolExecutor(HTTP_THREADS, thread_name_prefix="http")
        self.mcp = Sessions(secrets, self._deliver)
        self.local = threading.local()
        self.grants: dict[int, Grant] = {}
        self.waiting: dict[int, list[tuple[float, bytes, dict[str, Any], list[bytes]]]] = {}
        self.inflight: dict[int, int] = {}
        self.running = True
        self._log = Sparse(log, LOG_EVERY)

    def bind(self, group: int | None = None) -> None:
        path = self.home.run / "gateway.sock"
        path.unlink(missing_ok=True)
        self.router.bind(self.home.gateway_endpoint)
        os.chmod(path, 0o600 if group is None else 0o660)
        if group is not None:               # --user: workers of that group connect too
            os.chown(path, -1, group)

    def serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.results, zmq.POLLIN)
        log.info("gateway ready: %s", self.home.gateway_endpoint)
        while self.running:
            for sock, _ in poller.poll(250 if self.waiting else 1000):
                if sock is self.router:
                    self._drain()
                else:
                    self._forward_results()
            self._expire_waiting(time.monotonic())
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.mcp.close()
        self.egress.close()
        self.ctx.destroy(linger=0)

    # ---- in ----------------------------------------------------------------------------------

    def _drain(self) -> None:
        for _ in range(1000):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            pid = peercred.pid(frames[0])
            ident, body = frames[0].bytes, [f.bytes for f in frames[1:]]
            try:
                header, data = protocol.decode(body)
            except ProtocolError as e:
                self._log.warning("malformed", f"gateway: malformed message from pid {pid}: {e}")
                continue
            try:
                if pid is not None and pid == self.parent:
                    self._from_server(header)
                elif pid is not None and header["k"] in ("http", "store_call", "mcp"):
                    self._request(pid, ident, header, data)
                else:
                    self._log.warning("refused", f"gateway: {header['k']} from pid {pid} refused")
            except Exception:          # a bug in one request: logged; the gateway keeps serving
                log.exception("gateway: internal error on %s", header["k"])
                if "id" in header:
                    self._send([ident, *protocol.encode(protocol.ok(header["id"], err="internal error in the "
                                                                                  "gateway (see the server log)"))])

    def _from_server(self, header: dict[str, Any]) -> None:
        kind = header["k"]
        if kind == "grant":
            pid = header["pid"]
            self.grants[pid] = Grant.of(header)
            for _until, ident, h, data in self.waiting.pop(pid, []):
                self._request(pid, ident, h, data)
        elif kind == "revoke":
            self.mcp.revoke(header["pid"])
            self.grants.pop(header["pid"], None)
            self.waiting.pop(header["pid"], None)
            self.inflight.pop(header["pid"], None)
        elif kind == "shutdown":
            self.running = False

    def _request(self, pid: int, ident: bytes, header: dict[str, Any], data: list[bytes]) -> None:
        grant = self.grants.get(pid)
        if grant is None:
            waiting = self.waiting.get(pid, [])
            if len(waiting) >= PER_WORKER or sum(map(len, self.waiting.values())) >= WAITING_MAX:
                self._no_grant(pid, ident, header["id"])
            else:
                self.waiting[pid] = [*waiting, (time.monotonic() + GRANT_WAIT, ident, header, data)]
            return
        if header["k"] == "http":
            self._http(pid, grant, ident, header, data)
        elif header["k"] == "mcp":
            self._mcp(pid, grant, ident, header, data)
        else:
            self._send([ident, *self._store_call(grant, header, data)])

    def _expire_waiting(self, now: float) -> None:
        for pid in list(self.waiting):
            keep = []
            for item in self.waiting[pid]:
                if item[0] > now:
                    keep.append(item)
                else:
                    self._no_grant(pid, item[1], item[2]["id"])
            if keep:
                self.waiting[pid] = keep
            else:
                del self.waiting[pid]

    def _no_grant(self, pid: int, ident: bytes, rid: str) -> None:
        """Refuses a request from a process the server granted nothing (not yet, or beyond its wait)."""
        self._log.warning("stranger", f"gateway: a request from pid {pid}, which runs no actor the server told "
                                      f"of, refused")
        self._send([ident, *protocol.encode(protocol.ok(rid, err="refused: this process runs no actor known to "
                                                                 "the server"))])

    def _admit(self, pid: int, ident: bytes, rid: str, granted: bool, handler: str) -> bool:
        """Whether an outside request may start: its handler granted, and room among the worker's
        requests in flight; else the refusal is sent."""
        if not granted:
            self._send([ident, *_denied(rid, f"this actor's manifest grants no {handler} handler")])
            return False
        if self.inflight.get(pid, 0) >= PER_WORKER:
            self._send([ident, *protocol.encode(protocol.ok(rid, err="too many requests in flight"))])
            return False
        return True

    # ---- http-client -------------------------------------------------------------------------

    def _http(self, pid: int, grant: Grant, ident: bytes, header: dict[str, Any], data: list[bytes]) -> None:
        rid = header["id"]
        if not self._admit(pid, ident, rid, grant.http is not None, "http-client"):
            return
        http = grant.http
        timeout = header.get("timeout")
        timeout = min(http.timeout, float(timeout)) if isinstance(timeout, int | float) and timeout > 0 \
            else http.timeout
        body = data[0] if header.get("has_body") and data else None
        self.inflight[pid] = self.inflight.get(pid, 0) + 1

        def run() -> Reply:
            try:
                resp = self.egress.send(http, header["method"], header["uri"], header["headers"], body, timeout)
            except Denied as e:
                log.info("gateway: actor %s (%s): http-client refused: %s %s: %s", grant.actor, grant.name,
                         header["method"][:16], header["uri"][:200], e)
                return _denied(rid, str(e))
            except Failed as e:
                return protocol.encode(protocol.ok(rid, err=str(e)))
            value = {"status": resp.status, "headers": resp.headers}
            return protocol.encode(protocol.ok(rid, value=value, has_body=resp.body is not None),
                                   *([resp.body] if resp.body is not None else []))
        self.pool.submit(self._in_thread, pid, ident, rid, run)

    def _in_thread(self, pid: int, ident: bytes, rid: str, run: Callable[[], Reply]) -> None:
        try:
            reply = run()
        except Exception:
            log.exception("gateway: internal error in an HTTP request")
            reply = protocol.encode(protocol.ok(rid, err="internal error in the gateway (see the server log)"))
        self._deliver(pid, ident, reply)

    def _deliver(self, pid: int, ident: bytes, reply: Reply) -> None:
        """An answer made on another thread, handed to this loop (which alone uses the ROUTER)."""
        push = getattr(self.local, "push", None)
        if push is None:
            push = self.local.push = self.ctx.socket(zmq.PUSH)
            push.connect(RESULTS)
        push.send_multipart([str(pid).encode(), ident, *reply])

    def _forward_results(self) -> None:
        while True:
            try:
                pid, *reply = self.results.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            n = self.inflight.get(int(pid), 1) - 1
            if n > 0:
                self.inflight[int(pid)] = n
            else:
                self.inflight.pop(int(pid), None)
            self._send(reply)

    # ---- mcp-client ----------------------------------------------------------------------------

    def _mcp(self, pid: int, grant: Grant, ident: bytes, header: dict[str, Any], data: list[bytes]) -> None:
        rid = header["id"]
        if not self._admit(pid, ident, rid, grant.mcp is not None, "mcp-client"):
            return
        timeout = header.get("timeout")
        now = self.mcp.request(pid, ident, grant.mcp, header, data,
                               float(timeout) if isinstance(timeout, int | float) and timeout > 0 else None)
        if now is not None:
            self._send([ident, *now])
        else:
            self.inflight[pid] = self.inflight.get(pid, 0) + 1

    # ---- store -------------------------------------------------------------------------------

    def _store_call(self, grant: Grant, header: dict[str, Any], data: list[bytes]) -> Reply:
        rid, op, args = header["id"], header["op"], header["args"]
        if grant.store_max is None:
            return _denied(rid, "this actor's manifest grants no store handler")
        spec = STORE_OPS.get(op)
        if spec is None or len(args) != spec[0] or not all(isinstance(a, str) for a in args) or \
                (spec[1] and not data):
            return protocol.encode(protocol.ok(rid, err=f"store: bad call {op!r}"))
        try:
            value = spec[2](self.store, args, data[0] if spec[1] else b"", grant.store_max)
        except QuotaExceeded as e:
            log.info("gateway: actor %s (%s): store refused: %s", grant.actor, grant.name, e)
            return _denied(rid, str(e))
        except StoreError as e:
            return protocol.encode(protocol.ok(rid, err=str(e)))
        if isinstance(value, bytes):
            return protocol.encode(protocol.ok(rid, has_body=True), value)
        return protocol.encode(protocol.ok(rid, value=value))

    def _send(self, frames: list[bytes]) -> None:
        try:
            self.router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as e:
            log.debug("gateway: an answer was dropped: %s", e)


def _denied(rid: str, why: str) -> Reply:
    return protocol.encode(protocol.ok(rid, denied=why))


StoreOp = Callable[[ContentStore, list[str], bytes, int], Any]
# WIT function -> (string arguments, takes content, what it does)
STORE_OPS: dict[str, tuple[int, bool, StoreOp]] = {
    "new": (0, False, lambda s, a, c, q: s.new()),
    "store": (1, True, lambda s, a, c, q: s.put(a[0], c, q)),
    "get": (2, False, lambda s, a, c, q: s.get(a[0], a[1])),
    "exists": (2, False, lambda s, a, c, q: s.exists(a[0], a[1])),
    "label": (3, False, lambda s, a, c, q: s.label(a[0], a[1], a[2], q)),
    "get-by-label": (2, False, lambda s, a, c, q: s.get_by_label(a[0], a[1])),
    "remove-label": (2, False, lambda s, a, c, q: s.remove_label(a[0], a[1])),
    "remove-from-label": (3, False, lambda s, a, c, q: s.remove_from_label(a[0], a[1], a[2])),
    "store-at-label": (2, True, lambda s, a, c, q: s.put_at_label(a[0], a[1], c, q)),
    "replace-content-at-label": (2, True, lambda s, a, c, q: s.put_at_label(a[0], a[1], c, q)),
    "replace-at-label": (3, False, lambda s, a, c, q: s.label(a[0], a[1], a[2], q)),
    "list-labels": (1, False, lambda s, a, c, q: s.list_labels(a[0])),
    "list-all-content": (1, False, lambda s, a, c, q: s.list_content(a[0])),
    "calculate-total-size": (1, False, lambda s, a, c, q: s.total_size(a[0])),
}

"""Who may talk to the management socket.

The default socket is a unix socket in ``$THEATER_HOME/run`` (directory 0700, socket
0600): only the owner reaches it. A TCP address on loopback is open to local users, unless
``--curve`` asks for keys there too. Any other TCP address requires CURVE (ZeroMQ's
authenticated encryption, RFC 26): the server's key pair must exist (``theater key --curve``
makes it; the server never makes one behind the operator's back), and only clients whose
public keys are in ``keys/authorized/`` get in.

The ``Gatekeeper`` thread answers ZeroMQ's authentication requests (ZAP, RFC 27) for the
management socket: it reads ``keys/authorized/`` at each new connection (adding or removing a
client needs no restart), logs who was let in and who was refused with their address and
key, and, from the socket's monitor, logs the connections refused before any key was shown
(a client without CURVE, or holding the wrong server key). A refused client's ZeroMQ socket
reconnects every 100 ms until its program gives up, so the same refusal is logged at most
``REPEATS_LOGGED`` times a minute (a retrying client cannot hide the next one), and all
refusals at most ``REFUSALS_LOGGED`` a minute, so a scanner cannot flood the log.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import zmq
from zmq.utils import z85

from theater import curve_keys
from theater.endpoints import is_loopback, tcp_host
from theater.errors import UsageError
from theater.paths import Home

log = logging.getLogger("theater.server")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
MONITOR_ENDPOINT = "inproc://theater.management.monitor"
REFUSALS_LOGGED = 60
REPEATS_LOGGED = 3
# How often the gatekeeper thread looks up from its sockets to see whether it should stop.
POLL_INTERVAL = 0.25
# A key removed from keys/authorized stops the sessions it opened within this long.
REREAD_EVERY = 1.0

_WHY = {
    zmq.Event.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "it does not use CURVE",
    zmq.Event.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "its CURVE handshake failed (the wrong server key?)",
}


def needs_curve(home: Home, listen: str, curve: bool) -> bool:
    """Whether ``listen`` takes CURVE; UsageError (one line, saying how) if it cannot be served."""
    if listen.startswith("ipc://"):
        if curve:
            raise UsageError("--curve: CURVE applies to tcp:// addresses (a unix socket is guarded by its mode)")
        return False
    if not listen.startswith("tcp://"):
        raise UsageError(f"--listen {listen}: expected ipc://PATH or tcp://HOST:PORT")
    host = tcp_host(listen)
    if not (curve or not is_loopback(host)):
        return False
    if curve_keys.curve_pair(home, "server") is None:
        why = "--curve was given" if curve else f"{host} is reachable from other hosts"
        raise UsageError(f"--listen {listen}: {why}, so clients must authenticate with CURVE, and {home.root} "
                         f"has no CURVE key yet: run `theater key --curve --home {home.root}`, then authorize "
                         f"each client's public key in {home.keys / 'authorized'}/NAME.key (docs/operations.md)")
    return True


def secure_listener(sock: zmq.Socket, home: Home, listen: str, curve: bool = False) -> Gatekeeper | None:
    """Configures ``sock`` for ``listen`` before it binds: nothing for ipc and plain loopback, CURVE
    (and a running gatekeeper, returned) otherwise."""
    if not needs_curve(home, listen, curve):
        return None
    pair = curve_keys.curve_pair(home, "server")
    assert pair is not None
    gate = Gatekeeper(sock.context, home, listen)
    gate.start()
    sock.monitor(MONITOR_ENDPOINT, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
    sock.curve_secretkey = pair[1].encode()
    sock.curve_publickey = pair[0].encode()
    sock.curve_server = True
    sock.zap_domain = b"theater"
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)     # no answering handler: refused, never let in
    clients, bad = curve_keys.authorized_clients(home)
    for path in bad:
        log.warning("%s holds no CURVE public key; ignored", path)
    log.info("the management socket requires CURVE (server key %s); %d authorized client key(s) in %s",
             pair[0], len(clients), home.keys / "authorized")
    return gate


class Gatekeeper:
    """The ZAP handler and handshake monitor of the management socket, in a thread of its own."""

    def __init__(self, ctx: zmq.Context, home: Home, listen: str) -> None:
        self.ctx = ctx
        self.home = home
        self.listen = listen
        self.stopping = threading.Event()
        self.bound = threading.Event()
        self.thread = threading.Thread(target=self._run, name="zap", daemon=True)
        self.window = 0.0
        self.seen: dict[str, int] = {}         # this minute's refusals: line -> times
        self.unlogged = 0
        self._keys: set[str] = set()           # keys/authorized as last read (``revoked``)
        self._read_at = -REREAD_EVERY
        self.keys_of: dict[bytes, str] = {}    # a CURVE client's routing identity -> its key
        # each key's last admission (monotonic): keys/authorized held it then, which a listing
        # read before does not know (a key added since, its client just let in, is no revoked one)
        self._admitted: dict[str, float] = {}

    def start(self) -> None:
        self.thread.start()
        self.bound.wait(5)          # the handler must be there before the socket accepts anyone

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(2 * POLL_INTERVAL + 1)

    def _run(self) -> None:
        zap = self.ctx.socket(zmq.REP)
        zap.linger = 0
        zap.bind(ZAP_ENDPOINT)
        monitor = self.ctx.socket(zmq.PAIR)
        monitor.linger = 0
        monitor.connect(MONITOR_ENDPOINT)
        self.bound.set()
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self.stopping.is_set():
                for sock, _ in poller.poll(POLL_INTERVAL * 1000):
                    if sock is zap:
                        zap.send_multipart(self._guarded(zap.recv_multipart()))
                    else:
                        from zmq.utils.monitor import recv_monitor_message  # imports asyncio: not at start
                        self._handshake_failed(recv_monitor_message(monitor))
        except zmq.ContextTerminated:
            pass
        finally:
            zap.close()
            monitor.close()

    def revoked(self, frames: list[zmq.Frame]) -> bool:
        """Whether a message on the management socket comes from a CURVE client whose key has
        left keys/authorized since it connected (read again at most every ``REREAD_EVERY``): it
        is refused, not served. The server's own local socket's messages carry no key."""
        try:
            key = frames[-1].get("User-Id")
        except zmq.ZMQError:
            return False
        if not key:
            return False
        self.keys_of[frames[0].bytes] = key
        self._reread()
        return self._gone(key)

    def revoked_clients(self, subscribed: set[bytes]) -> list[bytes]:
        """Of the clients holding subscriptions (events followed, actors watched), those whose key
        has been revoked: their streams end too. Other clients are forgotten."""
        self._reread()
        self.keys_of = {c: k for c, k in self.keys_of.items() if c in subscribed}
        return [c for c, k in self.keys_of.items() if self._gone(k)]

    def _gone(self, key: str) -> bool:
        """Not in keys/authorized as last read, nor let in since that read."""
        return key not in self._keys and self._admitted.get(key, -math.inf) < self._read_at

    def _reread(self) -> None:
        now = time.monotonic()
        if now - self._read_at >= REREAD_EVERY:
            self._keys, self._read_at = set(curve_keys.authorized_clients(self.home)[0]), now

    def _guarded(self, request: list[bytes]) -> list[bytes]:
        """The answer to one ZAP request; whatever goes wrong in finding it refuses the client (and
        the thread goes on: with no handler, nobody could connect)."""
        try:
            return self._answer(request)
        except Exception:
            log.exception("management: a CURVE handshake could not be checked; refused")
            return [*request[:2], b"500", b"internal error", b"", b""]

    def _answer(self, request: list[bytes]) -> list[bytes]:
        """One ZAP request (RFC 27): [version, id, domain, address, identity, mechanism, key]."""
        version, rid, _domain, address, _identity, mechanism, *credentials = [*request, b"", b"", b"", b""][:7]
        peer = address.decode(errors="replace")
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            self._refused(f"refused a client from {peer}: mechanism {mechanism.decode(errors='replace')!r}")
            return [version, rid, b"400", b"CURVE required", b"", b""]
        key = z85.encode(credentials[0]).decode()
        clients, _ = curve_keys.authorized_clients(self.home)
        name = clients.get(key)
        if name is None:
            self._refused(f"refused a CURVE client from {peer}: key {key} is not in {self.home.keys / 'authorized'}")
            return [version, rid, b"400", b"unknown key", b"", b""]
        log.info("management: CURVE client %r (key %s) connected from %s", name, key, peer)
        self._admitted[key] = time.monotonic()
        return [version, rid, b"200", b"OK", key.encode(), b""]       # each message then carries the key

    def _handshake_failed(self, event: dict) -> None:
        why = _WHY.get(event.get("value"), f"handshake error {event.get('value')}")
        where = event.get("endpoint", b"").decode(errors="replace") or self.listen
        self._refused(f"refused a connection on {where}: {why}")

    def _refused(self, line: str) -> None:
        """Logs a refusal within the minute's limits (then how many were not logged)."""
        now = time.monotonic()
        if now - self.window >= 60:
            if self.unlogged:
                log.warning("management: %d more refused connections were not logged", self.unlogged)
            self.window, self.unlogged = now, 0
            self.seen.clear()
        times = self.seen.get(line, 0)
        if times >= REPEATS_LOGGED or sum(self.seen.values()) >= REFUSALS_LOGGED:
            self.unlogged += 1
            return
        self.seen[line] = times + 1
        log.warning("management: %s", line)

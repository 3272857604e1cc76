"""Who may talk to the management socket.

The default socket is a unix socket in ``$THEATER_HOME/run`` (directory 0700, socket
0600): only the owner reaches it. A TCP address on loopback is open to local users. Any
other TCP address requires CURVE: the server's key pair lives in ``keys/curve/`` (created
on first use) and only clients whose public keys are in ``keys/authorized/`` get in
(ZeroMQ's ZAP handler, run by pyzmq's authenticator thread).
"""

from __future__ import annotations

import logging
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from theater.endpoints import is_loopback, tcp_host
from theater.errors import UsageError
from theater.paths import Home

log = logging.getLogger("theater.server")

_authenticator: ThreadAuthenticator | None = None


def server_keys(home: Home) -> tuple[Path, Path]:
    """(public, secret) certificate files, created on first use; and the authorized-clients folder."""
    curve = home.keys / "curve"
    curve.mkdir(mode=0o700, parents=True, exist_ok=True)
    (home.keys / "authorized").mkdir(mode=0o700, exist_ok=True)
    public, secret = curve / "server.key", curve / "server.key_secret"
    if not secret.exists():
        zmq.auth.create_certificates(curve, "server")
    return public, secret


def secure_listener(sock: zmq.Socket, home: Home, listen: str) -> None:
    """Configures ``sock`` for ``listen`` before it binds: nothing for ipc and loopback, CURVE otherwise."""
    global _authenticator
    if listen.startswith("ipc://"):
        return
    if not listen.startswith("tcp://"):
        raise UsageError(f"--listen {listen}: expected ipc://PATH or tcp://HOST:PORT")
    if is_loopback(tcp_host(listen)):
        return
    _, secret = server_keys(home)
    public_key, secret_key = zmq.auth.load_certificate(secret)
    _authenticator = ThreadAuthenticator(sock.context)
    _authenticator.start()
    authorized = home.keys / "authorized"
    _authenticator.configure_curve(domain="*", location=str(authorized))
    sock.curve_secretkey = secret_key
    sock.curve_publickey = public_key
    sock.curve_server = True
    log.info("management socket %s requires CURVE; authorized client keys: %s", listen, authorized)

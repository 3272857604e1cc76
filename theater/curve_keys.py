"""CURVE, ZeroMQ's authenticated encryption, for remote management: the key files.

    keys/curve/server.key(_secret)   the server's pair     (`theater key --curve`)
    keys/curve/client.key(_secret)   this client's pair    (`theater key --curve --client`)
    keys/authorized/NAME.key         clients a server lets in, one public key per file
    keys/servers/HOST:PORT.key       remote servers this client trusts, by address

Keys are Z85 text (40 characters). A file may also be a ZeroMQ certificate (its
``public-key = "..."`` line), as ``zmq.auth.create_certificates`` writes them. (Apart from the
host's Ed25519 key, ``theater.keys``: a client needs these without loading ``cryptography``.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import zmq
from zmq.utils import z85

from .endpoints import tcp_host
from .errors import UsageError
from .paths import Home, write_atomically

_PUBLIC_LINE = re.compile(r'public-key\s*=\s*"([^"]*)"')
_SECRET_LINE = re.compile(r'secret-key\s*=\s*"([^"]*)"')


def curve_key(text: str, what: str) -> str:
    """The Z85 key ``text`` holds (bare, or a certificate's); UsageError naming ``what`` if none."""
    m = _PUBLIC_LINE.search(text)
    value = (m.group(1) if m else text).strip()
    try:
        valid = len(value) == 40 and len(z85.decode(value)) == 32
    except (ValueError, KeyError, UnicodeError):
        valid = False
    if not valid:
        raise UsageError(f"{what}: not a CURVE key (40 characters of Z85, as `theater key --curve` prints)")
    return value


def curve_pair(home: Home, role: str, create: bool = False) -> tuple[str, str] | None:
    """This home's CURVE pair for ``role`` ("server" or "client") as (public, secret), created if
    asked and missing. The public key is derived from the secret, so the two always match."""
    folder = home.keys / "curve"
    secret_file = folder / f"{role}.key_secret"
    if not secret_file.exists():
        if not create:
            return None
        public, secret = zmq.curve_keypair()
        _private_dir(folder)
        try:
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return curve_pair(home, role)          # another process made it first
        with os.fdopen(fd, "wb") as f:
            f.write(secret + b"\n")
        write_atomically(folder / f"{role}.key", public + b"\n", mode=0o644)
    secret_text = secret_file.read_text()
    m = _SECRET_LINE.search(secret_text)
    secret = curve_key(m.group(1) if m else secret_text, str(secret_file))
    return zmq.curve_public(secret.encode()).decode(), secret


def authorized_clients(home: Home) -> tuple[dict[str, str], list[str]]:
    """keys/authorized/*.key: {public key: name (the file's stem)}, and the files holding no key."""
    keys: dict[str, str] = {}
    bad: list[str] = []
    folder = home.keys / "authorized"
    for path in sorted(folder.glob("*.key")) if folder.is_dir() else []:
        try:
            keys[curve_key(path.read_text(), str(path))] = path.stem
        except (UsageError, OSError, UnicodeDecodeError):
            bad.append(str(path))
    return keys, bad


def server_key_file(home: Home, endpoint: str) -> Path:
    """Where this client keeps the public key of the server at ``tcp://HOST:PORT``."""
    tcp_host(endpoint)                              # validates the address
    return home.keys / "servers" / f"{endpoint.removeprefix('tcp://')}.key"


def known_server_key(home: Home, endpoint: str) -> str | None:
    path = server_key_file(home, endpoint)
    return curve_key(path.read_text(), str(path)) if path.exists() else None


def trust_server_key(home: Home, endpoint: str, key: str) -> Path:
    path = server_key_file(home, endpoint)
    _private_dir(path.parent)
    write_atomically(path, curve_key(key, "--server-key").encode() + b"\n", mode=0o644)
    return path


def _private_dir(path: Path) -> None:
    """``path`` and its parent (``keys/``) made if missing, readable by their owner only."""
    for d in (path.parent, path):
        if not d.exists():
            d.mkdir(mode=0o700, parents=True)
            os.chmod(d, 0o700)              # whatever the umask

"""The host's Ed25519 signing key (created on first start, private key file mode 0600). The CURVE
keys that let clients on other hosts manage a server are ``theater.curve_keys``."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import UsageError
from .paths import Home


def load_or_create(home: Home) -> Ed25519PrivateKey:
    """The host key, created atomically (O_EXCL) if there is none yet."""
    path = home.host_key
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        home.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create(home)       # another process won the race
        with os.fdopen(fd, "wb") as f:
            f.write(raw.hex().encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        home.host_pub.write_text(public_hex(key.public_key()) + "\n")
        return key
    text = path.read_text().strip()
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
    except ValueError:
        raise UsageError(f"{path}: not an Ed25519 private key (expected 64 hex digits)") from None


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def parse_public(text: str) -> Ed25519PublicKey:
    """A public key given as 64 hex digits, or the path of a file holding them."""
    value = text.strip()
    try:
        if len(value) != 64 and Path(value).is_file():
            value = Path(value).read_bytes()[:4096].decode().strip()
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value))
    except ValueError:          # UnicodeDecodeError included: a binary file
        raise UsageError(f"{text!r} is not an Ed25519 public key (expected 64 hex digits, "
                         f"as `theater key` prints, or a file holding them)") from None


def read_public(home: Home) -> Ed25519PublicKey:
    if not home.host_pub.exists():
        raise UsageError(f"no host key under {home.keys} yet (the server creates it on first start)")
    return parse_public(home.host_pub.read_text())

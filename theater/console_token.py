"""The web console's access token (``keys/console.token``): what a browser or script shows to
a console that listens off loopback (``theater-server --console HOST:PORT``, docs/console.md).

``theater console --token`` makes it (once) and prints it; the server only reads it, at each
request, so replacing or deleting the file takes effect at once (a console whose token is
gone lets nobody in). A browser presents it once (``?token=``) and then holds a cookie derived
from it; a script sends ``Authorization: Bearer TOKEN``. Both are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .paths import Home

COOKIE_DOMAIN = b"theater-console-cookie/v1"


def path(home: Home) -> Path:
    return home.keys / "console.token"


def read(home: Home) -> str | None:
    """The token, or None when there is none (or it cannot be read)."""
    try:
        text = path(home).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def create(home: Home, replace: bool = False) -> str:
    """The token, made first if there is none (or a new one, with ``replace``): 256 random bits,
    in a file only its owner reads."""
    current = None if replace else read(home)
    if current is not None:
        return current
    token = secrets.token_urlsafe(32)
    home.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = path(home)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, target)
    return token


def cookie_value(token: str) -> str:
    """What a browser holds once it has shown the token: derived from it, so the token itself
    never sits in a cookie, and a new token ends every old cookie."""
    return hmac.new(token.encode(), COOKIE_DOMAIN, hashlib.sha256).hexdigest()


def matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())

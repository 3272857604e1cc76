"""Server-side secrets: named values a manifest may place into what leaves the host, never into an actor.

A secret is defined in ``server.toml`` (``[secrets]`` NAME = "value") or as a file
``$THEATER_HOME/keys/secrets/NAME`` readable by its owner only (mode 0600; one trailing
newline is dropped). A manifest refers to one as ``${secret:NAME}`` inside an
``http-client`` header value; only the gateway process puts the value in its place, in the
request it sends. Names are letters, digits and ``_``, starting with a letter or ``_``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import ManifestError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
REF = re.compile(r"\$\{secret:([^}]*)\}")


def refs(template: str) -> list[str]:
    """The secret names ``template`` refers to."""
    return REF.findall(template)


def check_template(value: object) -> str:
    """A header value as a manifest writes it; ValueError names a malformed reference."""
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise ValueError("expected a header value (a string on one line)")
    for name in refs(value):
        if not NAME.match(name):
            raise ValueError(f"${{secret:{name}}}: a secret name is letters, digits and _")
    return value


class Secrets:
    """The secrets of one server: the ``[secrets]`` table, then the files under ``folder``."""

    def __init__(self, table: Mapping[str, str], folder: Path) -> None:
        self._table = dict(table)
        self.folder = folder

    def __repr__(self) -> str:                      # never the values
        return f"Secrets({sorted(self._table)}, {self.folder})"

    def missing(self, template: str) -> list[str]:
        """The names ``template`` refers to that are not defined."""
        return [n for n in refs(template) if n not in self._table and not (self.folder / n).is_file()]

    def value(self, name: str) -> str:
        """A secret's value; ManifestError if it is undefined or its file is open to others."""
        if name in self._table:
            return self._table[name]
        path = self.folder / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            raise ManifestError(f"secret {name!r} is not defined (server.toml [secrets] or {path})") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
                raise ManifestError(f"secret {name!r}: {path} must be a regular file of mode 0600")
            raw = f.read(1 << 16)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ManifestError(f"secret {name!r}: {path} is not UTF-8 text") from None
        return text[:-1] if text.endswith("\n") else text

    def render(self, template: str) -> tuple[str, dict[str, str]]:
        """``template`` with each reference replaced by its value, and the values used (by name)."""
        used = {n: self.value(n) for n in refs(template) if NAME.match(n)}
        return REF.sub(lambda m: used.get(m.group(1), m.group(0)), template), used

"""Driving ``tests/actors/agent.wat`` (HTTP requests and store calls on request) from a test.

A message is an op byte and length-prefixed fields; the reply starts with ``O`` (ok), ``N``
(ok, none) or ``E`` (err). ``manifest`` writes a manifest for it with the grants a test asks for.
"""

from __future__ import annotations

import struct
from pathlib import Path

from theater.client import Client

from .conftest import ACTORS

AGENT = ACTORS / "agent.wat"


def manifest(folder: Path, name: str = "agent", http: str = "allowed_hosts = []", store: str = "") -> Path:
    """A manifest granting message-server, http-client and store (the agent imports both), with
    the given TOML key lines for the last two."""
    text = (f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{AGENT}"\n\n[[handler]]\ntype = "message-server"\n'
            f'\n[[handler]]\ntype = "http-client"\n{http}\n\n[[handler]]\ntype = "store"\n{store}\n')
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def message(op: str, *fields: bytes | str) -> bytes:
    out = op.encode()
    for f in fields:
        b = f.encode() if isinstance(f, str) else f
        out += struct.pack("<I", len(b)) + b
    return out


def ask(client: Client, actor: str, op: str, *fields: bytes | str) -> tuple[str, bytes]:
    """(tag, payload): tag O, N or E."""
    reply = client.request(actor, message(op, *fields))
    return chr(reply[0]), reply[1:]


def ok(client: Client, actor: str, op: str, *fields: bytes | str) -> bytes:
    tag, payload = ask(client, actor, op, *fields)
    assert tag == "O", f"{op}: {tag} {payload!r}"
    return payload


def counted(payload: bytes) -> list[bytes]:
    """A reply's (u32 length, bytes)* list."""
    out, i = [], 0
    while i < len(payload):
        (n,) = struct.unpack_from("<I", payload, i)
        out.append(payload[i + 4: i + 4 + n])
        i += 4 + n
    return out


def http_reply(payload: bytes) -> tuple[int, list[tuple[str, str]], bytes | None]:
    """(status, headers, body) from an 'H' reply's payload."""
    status, count = struct.unpack_from("<HI", payload, 0)
    i, headers = 6, []
    for _ in range(count):
        (n,) = struct.unpack_from("<I", payload, i)
        name = payload[i + 4: i + 4 + n].decode()
        i += 4 + n
        (n,) = struct.unpack_from("<I", payload, i)
        headers.append((name, payload[i + 4: i + 4 + n].decode()))
        i += 4 + n
    return status, headers, payload[i + 1:] if payload[i] else None

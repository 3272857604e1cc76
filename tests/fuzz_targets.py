"""Fuzz targets: the parsers and codecs that take bytes from outside (issue 15).

Each target takes one input (bytes) and either returns or raises the one error
type its code promises for bad input (a clean, one-line refusal). Anything else (another
exception, a crash of the process) is a finding. The same targets run two ways:

* ``tests/test_fuzz.py``: for a few seconds each in the suite (hypothesis), plus every input
  kept in ``tests/fuzz_corpus/<target>/`` (the crashes found so far, as regression tests);
* ``scripts/fuzz.py --minutes N``: coverage-guided (atheris), for long runs.

Targets: ``protocol`` (the management and worker message decoder), ``manifest`` (the
manifest parser and checker), ``codec`` (component values lowered into wasmtime's C values
and lifted back), ``export`` (the chain export reader and verifier), ``http_response`` (an
upstream HTTP response, through the gateway's reply and the worker's http-client handler,
into the value handed to wasm and the event recorded).
"""

from __future__ import annotations

import ctypes
import os
import struct
import tempfile
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from wasmtime import _ffi as ffi

from theater import manifest, protocol
from theater.errors import ManifestError, ProtocolError, TheaterError, UsageError, VerifyError
from theater.events import encode_data, read_export, verify_chain
from worker import wit
from worker.codec import Val, adapted
from worker.handlers.http_client import HttpClient
from worker.records import host_event
from worker.values import Err, Ok, lower, to_data


class Reader:
    """Deterministic choices from fuzz bytes (what atheris's FuzzedDataProvider does, portable)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            return 0
        self.at += 1
        return self.data[self.at - 1]

    def int(self, size: int, signed: bool = False) -> int:
        raw = bytes(self.byte() for _ in range(size))
        return int.from_bytes(raw, "little", signed=signed)

    def bytes(self, most: int = 64) -> bytes:
        n = self.byte() % (most + 1)
        out = self.data[self.at:self.at + n]
        self.at += len(out)
        return out

    def text(self, most: int = 32) -> str:
        return self.bytes(most * 2).decode("utf-8", "replace")


# ---- protocol -----------------------------------------------------------------------------------

def protocol_target(data: bytes) -> None:
    """A message as it comes off a socket: frames separated, the first the JSON header."""
    try:
        header, body = protocol.decode(data.split(b"\x00\xff")[:8])
    except ProtocolError as e:
        assert "\n" not in e.message
        return
    assert isinstance(header, dict) and isinstance(header["k"], str) and all(isinstance(b, bytes) for b in body)
    # what the decoder promises its callers: every integer field it knows fits a signed 64-bit
    spec = protocol.KINDS[header["k"]]
    known = {**({} if header["k"] in ("ok", "error") else {**protocol.OPTIONAL, **spec.optional}), **spec.fields}
    for name, typ in known.items():
        value = header.get(name)
        if typ is int and value is not None:
            assert -protocol.MAX_INT - 1 <= value <= protocol.MAX_INT, (name, value)


# ---- manifest -----------------------------------------------------------------------------------

def manifest_target(data: bytes) -> None:
    try:
        m = manifest.parse(data.decode("utf-8", "replace"), "fuzz.toml")
    except ManifestError as e:
        assert "\n" not in e.message.strip(), e.message
        return
    assert m.name


# ---- codec --------------------------------------------------------------------------------------

# WIT types as the byte adapter shows them to the host (every host call and export goes through one)
TYPES = ["bool", "u8", "s16", "u32", "s64", "u64", "f64", "string", "list<u8>", "option<list<u8>>",
         "list<string>", "tuple<string, list<u8>>", "list<tuple<string, string>>", "option<option<u32>>",
         "result<tuple<option<list<u8>>, tuple<option<list<u8>>>>, string>", "result<_, string>",
         "list<list<u8>>", "tuple<u8, s8, u16, s32, f32>"]
_INTS = {"u8": (1, False), "s8": (1, True), "u16": (2, False), "s16": (2, True), "u32": (4, False),
         "s32": (4, True), "u64": (8, False), "s64": (8, True)}


def value_of(d: wit.Desc, r: Reader, depth: int = 0) -> Any:
    """A value of WIT type ``d`` in the codec's Python shape, chosen by the fuzz bytes."""
    kind = d[0]
    if kind == "bool":
        return bool(r.byte() & 1)
    if kind in _INTS:
        return r.int(*_INTS[kind])
    if kind == "f32":
        return struct.unpack("<f", bytes(r.byte() for _ in range(4)))[0]
    if kind == "f64":
        return struct.unpack("<d", bytes(r.byte() for _ in range(8)))[0]
    if kind == "string":
        return r.text()
    if kind == "list":
        if d[1] == ("u8",):
            return r.bytes()
        return [value_of(d[1], r, depth + 1) for _ in range(r.byte() % (4 if depth < 3 else 1))]
    if kind == "option":
        return value_of(d[1], r, depth + 1) if r.byte() & 1 else None
    if kind == "result":
        ok = r.byte() & 1
        payload = d[1] if ok else d[2]
        return ("ok" if ok else "err", value_of(payload, r, depth + 1) if payload is not None else None)
    if kind == "tuple":
        return tuple(value_of(e, r, depth + 1) for e in d[1])
    if kind == "record":
        return {name: value_of(t, r, depth + 1) for name, t in d[1]}
    raise AssertionError(f"no generator for {kind}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (a != a and b != b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


def roundtrip(type_text: str, value: Any) -> Any:
    """Lowers ``value`` into a C value of the type, lifts it back, frees it."""
    c = adapted(wit.parse(type_text))
    v = Val()
    c.lower(value, v)
    try:
        return c.lift(v)
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(v))


def codec_target(data: bytes) -> None:
    r = Reader(data)
    type_text = TYPES[r.byte() % len(TYPES)]
    value = value_of(wit.parse(type_text), r)
    back = roundtrip(type_text, value)
    assert _same(back, value), (type_text, value, back)


# ---- chain export -------------------------------------------------------------------------------

_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()


def export_target(data: bytes) -> None:
    fd, path = tempfile.mkstemp(prefix="fuzz-export-", suffix=".jsonl")
    try:
        os.write(fd, data)
        os.close(fd)
        try:
            events = read_export(path)
            verify_chain(events, _KEY)
        except (VerifyError, UsageError) as e:
            assert "\n" not in e.message, e.message
    finally:
        os.unlink(path)


# ---- an HTTP response into an actor --------------------------------------------------------------

class _Host:
    """What the http-client handler uses of its host, the gateway's answer given."""

    def __init__(self, reply: list[bytes]) -> None:
        self.reply = reply
        self.recorded: list[tuple[str, Any]] = []

    def call_time_left(self) -> float:
        return 5.0

    def before_effect(self) -> None:
        pass

    def ask_gateway(self, header: dict[str, Any], *frames: bytes, spin: bool = True) -> tuple[dict, list[bytes]]:
        return protocol.decode(self.reply)

    def record(self, event_type: str, data: Any) -> None:
        self.recorded.append((event_type, data))


def http_response_target(data: bytes) -> None:
    """Status, headers and body as an upstream server may send them (the gateway keeps headers as
    text, bytes as they came), encoded as the gateway answers, decoded and handled by the worker,
    lowered into the actor's ``result<http-response, string>`` and recorded as event data."""
    r = Reader(data)
    status = r.int(2)
    headers = [[r.text(), r.text()] for _ in range(r.byte() % 6)]
    body = r.bytes(256) if r.byte() & 1 else None
    reply = protocol.encode(protocol.ok("q1", value={"status": status, "headers": headers},
                                        has_body=body is not None), *([body] if body is not None else []))
    handler = HttpClient.__new__(HttpClient)
    handler.host, handler.config = _Host(reply), {}
    send = handler.functions()["theater:simple/http-client"]["send-http"]
    request = {"method": "GET", "uri": "http://example.test/", "headers": [], "body": None}
    out = send(request)
    assert isinstance(out, Ok | Err)
    result = wit.package()["theater:simple/http-client"].funcs["send-http"].result
    back = roundtrip(result, lower(out))
    assert back[0] == ("ok" if isinstance(out, Ok) else "err")
    encode_data(host_event((request,), to_data(out)))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "protocol": protocol_target, "manifest": manifest_target, "codec": codec_target, "export": export_target,
    "http_response": http_response_target,
}
# What a target may raise for bad input besides its own refusals (never a finding).
EXPECTED: tuple[type[BaseException], ...] = (TheaterError,)

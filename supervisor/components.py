"""Components as clients upload them: WAT compiled to wasm, stored by SHA-256.

``$THEATER_HOME/components/<sha256>.wasm`` is what every incarnation of an actor loads, so
a restart does not depend on the client's files still being there. WAT text is turned
into wasm here (a parse, not a compile: the server never compiles).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict

from theater._wasm_errors import wat_error
from theater.errors import ComponentError, NoSuchComponent, Refused
from theater.paths import Home, write_atomically

WASM_MAGIC = b"\x00asm"
CORE_VERSION = b"\x01\x00\x00\x00"
# WAT sources turned into wasm already (their digest -> the wasm's): each start of a WAT actor
# would otherwise parse it again (~1 ms). The oldest is forgotten first.
_FROM_WAT: OrderedDict[bytes, str] = OrderedDict()
FROM_WAT_KEPT = 256
SHA256 = re.compile(r"[0-9a-f]{64}")


def to_wasm(data: bytes, what: str, file: str = "<component>") -> bytes:
    """The component's binary form; ComponentError with a one-line reason if there is none
    (a WAT syntax error names ``file``, the path it was read from, with line and column)."""
    if data.startswith(WASM_MAGIC):
        if data[4:8] == CORE_VERSION:
            raise ComponentError(f"{what} is a core WebAssembly module, not a component "
                                 f"(wrap it with `wasm-tools component new`)")
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ComponentError(f"{what} is not WebAssembly (neither a binary component nor WAT text)") from None
    if "(" not in text:
        raise ComponentError(f"{what} is not WebAssembly (neither a binary component nor WAT text)")
    import wasmtime  # only for WAT: the server starts ~50 ms faster without it

    try:
        wasm = wasmtime.wat2wasm(text)
    except wasmtime.WasmtimeError as e:
        raise ComponentError(f"{what} is not valid WAT: {wat_error(str(e), file)}") from None
    if wasm[4:8] == CORE_VERSION:
        raise ComponentError(f"{what} is a core module, not a component (its WAT must start with `(component`)")
    return wasm


def store(home: Home, data: bytes, what: str, for_group: bool = False, file: str = "<component>") -> str:
    """Stores a component (binary or WAT) and returns the SHA-256 of its wasm. The file is the
    server's alone, or readable by its group too when workers run as another user (--user:
    the folder's group is theirs, and files made in it inherit that group)."""
    source = None if data.startswith(WASM_MAGIC) else hashlib.sha256(data).digest()
    if source is not None and (sha := _FROM_WAT.get(source)) and (home.components / f"{sha}.wasm").exists():
        _FROM_WAT.move_to_end(source)
        return sha
    wasm = to_wasm(data, what, file)
    sha = hashlib.sha256(wasm).hexdigest()
    path = home.components / f"{sha}.wasm"
    if not path.exists():
        try:
            write_atomically(path, wasm, mode=0o640 if for_group else 0o600)
        except OSError as e:        # a full disk, a read-only home: the start is refused, the server goes on
            raise Refused(f"{what}: cannot store it under {home.components}: {e.strerror or e}") from None
    if source is not None:
        _FROM_WAT[source] = sha
        if len(_FROM_WAT) > FROM_WAT_KEPT:
            _FROM_WAT.popitem(last=False)
    return sha


def stored(home: Home, sha: str) -> str:
    """``sha`` if the server stores that component (a start that names it by digest, having
    sent its bytes before: see ``theater.digests``); NoSuchComponent if not."""
    if not is_stored(home, sha):
        raise NoSuchComponent(f"no component {sha[:64]!r} is stored here: send its bytes")
    return sha


def is_stored(home: Home, sha: str) -> bool:
    """Whether ``sha`` names a component the server stores (64 lowercase hex: never a path)."""
    return bool(SHA256.fullmatch(sha)) and (home.components / f"{sha}.wasm").is_file()

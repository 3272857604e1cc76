"""wasmtime's error texts in one line, with the cause kept and the place named.

wasmtime (anyhow) reports ``failed to compile: wasm[0]::function[1]`` on its first line and
the reason only under ``Caused by:`` (``... at offset 810: type mismatch: expected i32, found
i64``); a WAT parse error names its place as ``--> <anon>:138:22``, since it never knew the
file. These turn both into what an operator can act on.
"""

from __future__ import annotations

import re

_CAUSE = re.compile(r"^\s*(?:\d+:\s*)?(.*\S)\s*$")


def compile_error(text: str) -> str:
    """The first line and, if there is one, the innermost cause: ``failed to compile:
    wasm[0]::function[1]: Invalid input WebAssembly code at offset 810: type mismatch: ...``."""
    lines = [ln for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    first = lines[0].strip()
    if "Caused by:" in (ln.strip() for ln in lines):
        cause = _CAUSE.match(lines[-1])
        if cause is not None and cause.group(1) not in first:
            return f"{first}: {cause.group(1)}"
    return first


def wat_error(text: str, file: str) -> str:
    """A WAT parse error as ``FILE:LINE:COL: what`` (the file it came from, not ``<anon>``)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    what = lines[0] if lines else "unknown error"
    where = next((ln.removeprefix("-->").strip() for ln in lines if ln.startswith("-->")), "")
    if where.startswith("<anon>"):
        where = file + where.removeprefix("<anon>")
    return f"{where or file}: {what}"

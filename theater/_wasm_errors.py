"""wasmtime's error texts in one line, with the cause kept and the place named.

wasmtime (anyhow) reports ``failed to compile: wasm[0]::function[1]`` on its first line and
the reason only under ``Caused by:`` (``... at offset 810: type mismatch: expected i32, found
i64``); a WAT parse error names its place as ``--> <anon>:138:22``, since it never knew the
file. These turn both into what an operator can act on.
"""

from __future__ import annotations

import re

_NUMBERED = re.compile(r"^\s*\d+:\s*(.*)$")
MAX_CAUSE = 300


def compile_error(text: str) -> str:
    """The first line and, if there is one, the innermost cause: ``failed to compile:
    wasm[0]::function[1]: Invalid input WebAssembly code at offset 810: type mismatch: ...``.
    A cause that runs over several lines (``expected one of: ...`` then a list) is joined."""
    lines = [ln for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    first = lines[0].strip()
    marks = [i for i, ln in enumerate(lines) if ln.strip() == "Caused by:"]
    if not marks:
        return first
    causes: list[str] = []          # anyhow numbers a chain of causes "0: ...", "1: ..."; one is not
    for ln in lines[marks[-1] + 1:]:
        numbered = _NUMBERED.match(ln)
        if numbered is not None or not causes:
            causes.append((numbered.group(1) if numbered else ln).strip())
        else:
            causes[-1] += " " + ln.strip()
    cause = " ".join(causes[-1].split()) if causes else ""
    if not cause or cause in first:
        return first
    return f"{first}: {cause[:MAX_CAUSE]}{'...' if len(cause) > MAX_CAUSE else ''}"


def wat_error(text: str, file: str) -> str:
    """A WAT parse error as ``FILE:LINE:COL: what`` (the file it came from, not ``<anon>``)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    what = lines[0] if lines else "unknown error"
    where = next((ln.removeprefix("-->").strip() for ln in lines if ln.startswith("-->")), "")
    if where.startswith("<anon>"):
        where = file + where.removeprefix("<anon>")
    return f"{where or file}: {what}"

"""Text from outside (an actor's, a peer's) made fit for a terminal or a log line: control
characters shown as escapes, so none can move the cursor, retitle a terminal or start a line of
its own (issue 16, finding 8)."""

from __future__ import annotations

import re
from typing import Any

# C0 controls, DEL, C1 controls (a terminal may take U+009B as CSI), and the bidirectional
# overrides that reorder what is shown. Newline and tab only where they are the structure.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069"
_IN_LINE = re.compile(f"[{_CONTROLS}\n\t]")
_IN_TEXT = re.compile(f"[{_CONTROLS}]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def safe(text: Any, multiline: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), newlines and tabs
    too unless ``multiline``."""
    return (_IN_TEXT if multiline else _IN_LINE).sub(_escape, str(text))

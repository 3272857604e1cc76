"""How the three processes format their log lines: plain, or for the journal.

Plain lines carry a timestamp and a level name. Journal lines (sd-daemon(3)) start with the
record's syslog priority as ``<N>`` and carry no timestamp: journald adds its own, and reads
the priority from the prefix. A record that spans lines (a traceback, or text from an actor)
gets the prefix on every line, so nothing after a newline can claim a priority of its own, and
its lines after the first are indented; control characters are escaped in both forms. The
server decides which form (``$JOURNAL_STREAM``) and tells the chain process and the worker fork
server with ``--log-journal``: their output reaches stdout through the server.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from . import _linux
from .escapes import safe

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# syslog priorities (sd-daemon(3)): err 3, warning 4, info 6, debug 7.
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno: int) -> int:
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7


class PlainFormatter(logging.Formatter):
    """What an actor or a peer wrote into a record (a trap's message, a compiler's output, an
    exception's text) can neither move an operator's cursor (control characters are escaped)
    nor start a log line of its own: every line after a record's first is indented."""

    def __init__(self, fmt: str = PLAIN_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = safe(record.message, multiline=True)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return safe(super().formatException(ei), multiline=True)

    def formatStack(self, stack_info: str) -> str:
        return safe(super().formatStack(stack_info), multiline=True)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\n    ")


class JournalFormatter(PlainFormatter):
    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])


def is_journal(fd: int, env: dict[str, str] | None = None) -> bool:
    """Whether ``fd`` is the stream systemd connected to the journal: ``$JOURNAL_STREAM`` holds
    its "device:inode" (systemd.exec(5)); a redirected stdout no longer matches."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def helper(level: str, journal: bool, parent: int | None) -> None:
    """What each of the server's helper processes (chain, gateway, console) does first: log like
    the server, leave SIGHUP to it (it reopens the log they share), and end when it ends."""
    setup(level, journal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if parent:
        _linux.die_with_parent(signal.SIGTERM, parent=parent)


def setup(level: str, journal: bool, stream: IO[Any] = sys.stderr) -> None:
    """Logging for a helper process (the chain, the worker fork server and its workers)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if journal else PlainFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])


class Sparse:
    """Warnings a flood could repeat (a rogue's refused messages, an actor spawning in a loop past
    its bound): one line for each key every ``every`` seconds at most, the next saying how many
    were left unsaid."""

    def __init__(self, log: logging.Logger, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.every, self.clock = log, every, clock
        self._last: dict[Any, tuple[float, int]] = {}      # key -> (last line's time, lines unsaid since)

    def warning(self, key: Any, line: str) -> None:
        now = self.clock()
        last, unsaid = self._last.get(key, (-self.every, 0))
        if now - last < self.every:
            self._last[key] = (last, unsaid + 1)
            return
        more = f" ({unsaid} more in the last {now - last:.0f}s)" if unsaid else ""
        self.log.warning("%s%s", line, more)
        self._last[key] = (now, 0)

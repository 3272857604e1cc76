"""The server's log: where its lines go, in what form, and what happens when one cannot be written.

Two destinations. A file (``$THEATER_HOME/logs/server.log``), opened for appending and opened
again on SIGHUP, so logrotate can move it away and tell the server (``systemctl reload
theater-server``). Or stdout (``--log-stdout``): when stdout is the journal, lines carry
``<N>`` priorities and no timestamps (``theater._logging``), otherwise they are plain.

The server is the only writer: what its helpers print (the chain process, the worker fork
server and every worker) reaches it through pipes (``launch.OutputRelay``) and is written
here, so after a reopen every process's lines go to the new file.

A write that fails (a full disk, a closed stdout) never raises and never retries in a loop:
the line is dropped and counted, one line on stderr says so, a write is tried again at most
once every ``RETRY_EVERY`` seconds, and the first line that gets through says how many were lost.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from theater._logging import JournalFormatter, PlainFormatter, is_journal

# After a failed write, lines are dropped without trying for this long.
RETRY_EVERY = 1.0

_PREFIX = re.compile(r"<([0-7])>")

log = logging.getLogger("theater.server")


class LogSink:
    """One destination for every line the server logs or relays."""

    def __init__(self, path: Path | None, journal: bool | None = None, clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.journal = is_journal(1) if journal is None and path is None else bool(journal)
        self.clock = clock
        self.fd = 1 if path is None else self._open(path)
        self.dropped = 0
        self.failed_at: float | None = None
        self.told = False

    @staticmethod
    def _open(path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "stdout" + (" (journal)" if self.journal else "")

    def write(self, text: str) -> None:
        """Writes one line (or several, for a traceback); drops it if the destination fails."""
        now = self.clock()
        if self.failed_at is not None and now - self.failed_at < RETRY_EVERY:
            self.dropped += 1
            return
        data = (text + "\n").encode(errors="replace")
        if self.dropped:
            lost = f"theater-server: {self.dropped} log lines were lost (the log could not be written)"
            data = (f"<4>{lost}\n" if self.journal else f"{lost}\n").encode() + data
        try:
            while data:
                written = os.write(self.fd, data)
                if written == 0:            # never loop on a write that makes no progress
                    raise OSError(errno.EIO, "the log accepts no more data")
                data = data[written:]
        except OSError as e:
            self.failed_at = now
            self.dropped += 1
            if not self.told:
                self.told = True
                _stderr(f"theater-server: cannot write the log ({self.describe()}): {e.strerror or e}; "
                        f"dropping log lines until it can be written again")
            return
        self.failed_at, self.dropped, self.told = None, 0, False

    def relay(self, line: str) -> None:
        """A line a helper printed. For the journal it gets a priority no higher than "err": a
        worker runs untrusted code, and must not be able to raise alerts in the server's name."""
        if self.journal:
            m = _PREFIX.match(line)
            if m is None:
                line = "<6>" + line
            elif int(m.group(1)) < 3:
                line = "<3>" + line[m.end():]
        self.write(line)

    def reopen(self) -> bool:
        """Opens the log file again (SIGHUP: logrotate moved it away), and says so in the new one;
        False if there is no file, or it cannot be opened (then the old one stays in use)."""
        if self.path is None:
            log.info("SIGHUP: nothing to reopen (logging to %s)", self.describe())
            return False
        try:
            fd = self._open(self.path)
        except OSError as e:
            log.error("SIGHUP: cannot reopen the log %s: %s; still writing the old one", self.path, e.strerror or e)
            return False
        old, self.fd = self.fd, fd
        os.close(old)
        self.failed_at = None
        log.info("SIGHUP: log reopened: %s", self.path)
        return True

    def close(self) -> None:
        if self.path is not None and self.fd > 2:
            os.close(self.fd)
            self.fd = -1


class SinkHandler(logging.Handler):
    """The logging module's records, formatted, into a LogSink."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink = sink
        self.setFormatter(JournalFormatter() if sink.journal else PlainFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:               # a bad format string in a log call: say so, never raise
            text = f"(unformattable log record from {record.name}: {record.msg!r})"
        self.sink.write(text)


def setup(sink: LogSink, level: str) -> None:
    """Routes the server's logging into ``sink``."""
    logging.basicConfig(level=level.upper(), handlers=[SinkHandler(sink)], force=True)


def _stderr(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)

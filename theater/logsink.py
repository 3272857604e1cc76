"""Log lines onto a disk that may fill: a line that cannot be written is dropped and counted.

``logging``'s own stream handler answers a failed write with a traceback on stderr, which
on a full disk is the same full file: every log call then costs a traceback, and a busy
process spins on them (seen: the server's stderr filling with logging errors while the
chain process crash-looped on a full disk). Here each line is one ``os.write`` on the
descriptor (no buffer that could hold half a line to retry); one that fails is dropped,
and the next line that is written is preceded by how many were lost and why.
"""

from __future__ import annotations

import logging
import os


class LogSink:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lost = 0
        self.why = ""

    def write_line(self, text: str) -> None:
        data = (text + "\n").encode(errors="replace")
        if self.lost:
            data = f"theater: {self.lost} log lines lost ({self.why})\n".encode() + data
        try:
            os.write(self.fd, data)
        except OSError as e:
            self.lost += 1
            self.why = e.strerror or type(e).__name__
            return
        self.lost = 0


class SinkHandler(logging.Handler):
    """A logging handler writing through a LogSink."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.sink.write_line(text)


def setup(level: str, fd: int) -> LogSink:
    """The process's logging, onto descriptor ``fd``; returns the sink, to share with others."""
    sink = LogSink(fd)
    logging.basicConfig(level=level.upper(), handlers=[SinkHandler(sink)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return sink

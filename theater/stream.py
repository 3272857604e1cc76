"""Multipart messages over a unix stream socket: the path of a worker's events to the chain.

ZeroMQ queues a message inside the sending process until its I/O thread writes it to the
kernel: a sender killed in between loses it, unseen. An event an effect waits for must be
past that point. Once ``send`` on a unix stream socket has returned, its bytes are on the
receiver's queue, and they stay readable there whatever becomes of the sender (the kernel
reports the sender's end only after the last of them). So a worker ships its events here,
and knows, byte by byte, which of them are out of its hands (``written``).

A message: a u32 length of the rest, a u32 count of frames, a u32 length for each frame,
then the frames. Neither end ever blocks: what the socket does not take waits in this
object for room (``flush`` when a poll says the socket is writable), and ``receive``
returns the whole messages that have arrived so far.
"""

from __future__ import annotations

import errno
import socket
import struct

_U32 = struct.Struct("<I")
# One read takes at most this much (then the poll comes round again: other peers' turn). Kept
# under glibc's mmap threshold (128 KiB): Python allocates the whole size before the read, and
# a 1 MiB read cost an mmap and a munmap each time (12.8 us against 1.9 us for a 600-byte
# message; 30% of the chain process's own time during actor -> actor requests).
READ_MOST = 1 << 16


class Closed(Exception):
    """The other end is gone (or broke the framing): this stream is done."""


def frame(frames: list[bytes]) -> bytes:
    """The bytes of one message."""
    head = _U32.pack(len(frames)) + b"".join(_U32.pack(len(f)) for f in frames)
    body = head + b"".join(frames)
    return _U32.pack(len(body)) + body


class Stream:
    def __init__(self, sock: socket.socket, max_message: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.max_message = max_message
        self.out = bytearray()              # queued, not yet taken by the kernel
        self.queued = 0                     # bytes ever queued
        self.written = 0                    # bytes ever taken by the kernel
        self.inbuf = bytearray()
        self.more = False                   # the last read was cut short: more may be waiting
        self.broken: str | None = None      # the framing broke after the messages last returned

    @classmethod
    def connect(cls, path: str, max_message: int) -> Stream:
        """Raises OSError when nobody listens there (or its backlog is full: never waits)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return cls(sock, max_message)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, frames: list[bytes]) -> int:
        """Queues one message and writes what the socket takes; the byte count (``queued``)
        at which the message ends: it is in the kernel once ``written`` reaches it."""
        data = frame(frames)
        self.queued += len(data)
        self.out += data
        self.flush()
        return self.queued

    def flush(self) -> bool:
        """Writes what waits for room, as far as the socket takes it; whether all of it is
        written. (Deleting from the front of a bytearray moves no bytes: a backlog is not
        copied again at each send.)"""
        out = self.out
        sent = 0
        view = memoryview(out)
        try:
            while sent < len(out):
                sent += self.sock.send(view[sent:])
        except BlockingIOError:
            pass
        except OSError as e:
            raise Closed(f"cannot write: {errno.errorcode.get(e.errno or 0, e)}") from None
        finally:
            view.release()
            self.written += sent
            del out[:sent]
        return not out

    def receive(self) -> list[list[bytes]]:
        """The whole messages that have arrived (maybe none); raises Closed at the end of the
        stream and on a message that breaks the framing or the size limit (after returning
        the whole messages before it)."""
        if self.broken is not None:
            raise Closed(self.broken)
        try:
            data = self.sock.recv(READ_MOST)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError as e:
            raise Closed(f"cannot read: {errno.errorcode.get(e.errno or 0, e)}") from None
        if data == b"":
            raise Closed("closed by the other end")
        self.more = data is not None and len(data) == READ_MOST
        if data:
            self.inbuf += data
        return self._messages()

    def _messages(self) -> list[list[bytes]]:
        buf, at, out = self.inbuf, 0, []
        try:
            while len(buf) - at >= 4:
                (size,) = _U32.unpack_from(buf, at)
                if size > self.max_message or size < 4:
                    raise Closed(f"a message of {size} bytes (at most {self.max_message})")
                if len(buf) - at - 4 < size:
                    break
                out.append(_frames(bytes(buf[at + 4:at + 4 + size])))
                at += 4 + size
        except Closed as e:
            if not out:
                raise
            self.broken = str(e)
        if at:
            del buf[:at]
        return out

    def close(self) -> None:
        self.sock.close()


def _frames(body: bytes) -> list[bytes]:
    (count,) = _U32.unpack_from(body, 0)
    lengths_end = 4 + 4 * count
    if count == 0 or lengths_end > len(body):
        raise Closed(f"a message of {count} frames in {len(body)} bytes")
    lengths = struct.unpack_from(f"<{count}I", body, 4)
    if lengths_end + sum(lengths) != len(body):
        raise Closed("a message whose frames do not add up to its length")
    frames, at = [], lengths_end
    for n in lengths:
        frames.append(body[at:at + n])
        at += n
    return frames


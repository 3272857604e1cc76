"""The chain's end of the workers' event streams (``run/chain-stream.sock``, theater.stream).

Workers ship their events here rather than over ZeroMQ so that, once written, the events are
on this process's queue in the kernel, out of a dying worker's reach (worker.chainlink). Each
connection's messages are attributed, like ZeroMQ's, by the pid the kernel took at connect;
acknowledgements go back on the connection their events came on. Nothing here blocks: an
answer the worker does not read in time ends its connection (it connects again, and sends
what is not acknowledged again). A connection is read to its end, whatever its writing
says: a dead worker's last events are still there after the kernel refuses to take an
acknowledgement for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

import zmq

from theater import protocol
from theater.stream import Closed, Stream

log = logging.getLogger("theater.chain")

# Connections one process may hold open (a worker needs one; two while it connects again).
PER_PROCESS = 4
# Answers (acknowledgements) waiting for a worker that does not read them: past this, it is cut off.
MAX_UNREAD = 1 << 20
BACKLOG = 512

Cred = tuple[int, int, int]


class StreamPeer(bytes):
    """The peer id of a stream connection (never confused with a ZeroMQ routing id)."""


class Conn:
    def __init__(self, stream: Stream, peer: StreamPeer, cred: Cred) -> None:
        self.stream, self.peer, self.cred = stream, peer, cred
        self.deaf = False                   # its worker reads no more (gone): answers are dropped


class Streams:
    def __init__(self, path: Path, poller: zmq.Poller) -> None:
        self.path = path
        self.poller = poller
        path.unlink(missing_ok=True)        # left by a chain process that was killed
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        # the workers' group may connect when they run as another user (run/ is then the
        # server's user's and that group's alone: see supervisor.server._share_with_workers)
        run = path.parent.stat()
        if run.st_mode & 0o070:
            os.chown(path, -1, run.st_gid)
        os.chmod(path, 0o660 if run.st_mode & 0o070 else 0o600)
        self.listener.listen(BACKLOG)
        self.listener.setblocking(False)
        poller.register(self.listener.fileno(), zmq.POLLIN)
        self.by_fd: dict[int, Conn] = {}
        self.by_peer: dict[bytes, Conn] = {}
        self.inbox: list[tuple[StreamPeer, Cred, list[bytes]]] = []     # read, not yet handled
        self.opened = 0

    def ready(self, fd: int, events: int) -> None:
        """The poll says ``fd`` (the listener or a connection) is ready."""
        if fd == self.listener.fileno():
            self._accept()
            return
        conn = self.by_fd.get(fd)
        if conn is None:
            return
        if events & zmq.POLLOUT and not conn.deaf:
            self._flush(conn)
        if events & zmq.POLLIN and conn.peer in self.by_peer:
            self._read(conn)

    def read_all(self) -> None:
        """Reads whatever every connection holds: what was written before a query or a record
        was sent is handled before it is answered."""
        for conn in list(self.by_fd.values()):
            self._read(conn)
            while conn.stream.more and conn.peer in self.by_peer:
                self._read(conn)

    def take(self) -> list[tuple[StreamPeer, Cred, list[bytes]]]:
        got, self.inbox = self.inbox, []
        return got

    def send(self, peer: bytes, frames: list[bytes]) -> None:
        conn = self.by_peer.get(peer)
        if conn is None or conn.deaf:
            return                          # gone: it sends its events again on its next connection
        try:
            conn.stream.send(frames)
        except Closed:
            self._deaf(conn)
            return
        if len(conn.stream.out) > MAX_UNREAD:
            self._drop(conn, f"it left {len(conn.stream.out)} bytes of answers unread")
        elif conn.stream.out:
            self.poller.modify(conn.stream.fileno(), zmq.POLLIN | zmq.POLLOUT)

    def close(self) -> None:
        for conn in list(self.by_fd.values()):
            self._drop(conn, "")
        self.poller.unregister(self.listener.fileno())
        self.listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:            # out of descriptors: the next poll tries again
                log.error("chain: cannot accept a worker's event stream: %s", e)
                return
            stream = Stream(sock, protocol.MAX_MESSAGE)
            cred = stream.credentials()
            if sum(1 for c in self.by_fd.values() if c.cred[2] == cred[2]) >= PER_PROCESS:
                log.warning("chain: pid %d opened more than %d event streams; closing the newest", cred[2],
                            PER_PROCESS)
                stream.close()
                continue
            self.opened += 1
            conn = Conn(stream, StreamPeer(b"stream:%d" % self.opened), cred)
            self.by_fd[stream.fileno()] = conn
            self.by_peer[conn.peer] = conn
            self.poller.register(stream.fileno(), zmq.POLLIN)

    def _read(self, conn: Conn) -> None:
        try:
            for frames in conn.stream.receive():
                self.inbox.append((conn.peer, conn.cred, frames))
        except Closed as e:
            self._drop(conn, str(e))

    def _flush(self, conn: Conn) -> None:
        try:
            if conn.stream.flush():
                self.poller.modify(conn.stream.fileno(), zmq.POLLIN)
        except Closed:
            self._deaf(conn)

    def _deaf(self, conn: Conn) -> None:
        """Its worker is gone (or shut its end): what it wrote is still read, to the end."""
        conn.deaf = True
        conn.stream.out.clear()
        self.poller.modify(conn.stream.fileno(), zmq.POLLIN)

    def _drop(self, conn: Conn, why: str) -> None:
        if why and why != "closed by the other end":
            log.warning("chain: closed the event stream of pid %d: %s", conn.cred[2], why)
        fd = conn.stream.fileno()
        self.poller.unregister(fd)
        del self.by_fd[fd]
        del self.by_peer[conn.peer]
        conn.stream.close()

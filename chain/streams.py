"""The chain's end of the workers' event streams (``run/chain-stream.sock``, theater.stream).

Workers ship their events here rather than over ZeroMQ so that, once written, the events are
on this process's queue in the kernel, out of a dying worker's reach (worker.chainlink). Each
connection's messages are attributed, like ZeroMQ's, by the pid the kernel took at connect;
acknowledgements go back on the connection their events came on. Nothing here blocks: an
answer the worker does not read in time ends its connection (it connects again, and sends
what is not acknowledged again). A connection is read to its end, whatever its writing
says: a dead worker's last events are still there after the kernel refuses to take an
acknowledgement for it. A connection whose actor writes faster than its limits is left unread
for a while (``hold``, see chain.rates): its worker's writes wait, as while the chain cannot
write (``pause``). The connections are watched through one epoll descriptor in the
chain's poller: a turn of its loop costs the same with 3 workers or 500 (``zmq.Poller`` polls
each descriptor it holds at every turn: 37 us a turn with 500 idle ones, 1.6 us through epoll).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import time
from collections.abc import Callable, Collection
from pathlib import Path

import zmq

from theater import peercred, protocol
from theater._logging import Sparse
from theater.stream import Closed, Stream

from .access import LOG_EVERY

log = logging.getLogger("theater.chain")

# Connections one process may hold open (a worker needs one; two while it connects again).
PER_PROCESS = 4
# A connection whose process is no actor's worker (never bound, or no longer) is closed after
# this long: a worker connects after its bind, and binds come again at once after a chain
# restart, so only a stranger (or a worker that outlived its actor) holds one that long.
UNBOUND_FOR = 10.0
# Out of descriptors: connections wait in the backlog this long before accepting is tried again.
ACCEPT_RETRY = 1.0
# Answers (acknowledgements) waiting for a worker that does not read them: past this, it is cut off.
MAX_UNREAD = 1 << 20
BACKLOG = 512

Cred = tuple[int, int, int]
# A connection to read: data, or its end (which epoll reports whatever it was asked for).
_ENDED = select.EPOLLHUP | select.EPOLLERR
_READABLE = select.EPOLLIN | _ENDED


class StreamPeer(bytes):
    """The peer id of a stream connection (never confused with a ZeroMQ routing id)."""


class Conn:
    def __init__(self, stream: Stream, peer: StreamPeer, cred: Cred, now: float) -> None:
        self.stream, self.peer, self.cred = stream, peer, cred
        self.deaf = False                   # its worker reads no more (gone): answers are dropped
        self.mask = 0                       # what the epoll watches it for (0: not registered)
        self.bound_at = now                 # last seen an actor's worker (or opened)


class Streams:
    def __init__(self, path: Path, poller: zmq.Poller) -> None:
        self.path = path
        self.poller = poller
        path.unlink(missing_ok=True)        # left by a chain process that was killed
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        # the workers' group may connect when they run as another user (run/ is then the
        # server's user's and that group's alone: see supervisor.sharing)
        run = path.parent.stat()
        if run.st_mode & 0o070:
            os.chown(path, -1, run.st_gid)
        os.chmod(path, 0o660 if run.st_mode & 0o070 else 0o600)
        self.listener.listen(BACKLOG)
        self.listener.setblocking(False)
        poller.register(self.listener.fileno(), zmq.POLLIN)
        self.epoll = select.epoll()         # the connections, readable or writable
        poller.register(self.epoll.fileno(), zmq.POLLIN)
        self.by_fd: dict[int, Conn] = {}
        self.peek = select.poll()           # every connection: which hold something (``read_all``)
        self.by_peer: dict[bytes, Conn] = {}
        self.inbox: list[tuple[StreamPeer, Cred, list[bytes]]] = []     # read, not yet handled
        self.opened = 0
        self.paused = False                 # the chain cannot write: leave events in the kernel's hands
        self.held: dict[bytes, float] = {}  # peer -> until when it is left unread (its actor's rate)
        self.accept_at: float | None = None     # out of descriptors: accept again then
        self.warnings = Sparse(log, LOG_EVERY)  # one line a second: a process may connect again and again

    def ready(self, fd: int) -> None:
        """The chain's poll says ``fd`` (the listener, or the connections' epoll) is ready."""
        if fd == self.listener.fileno():
            self._accept()
            return
        for cfd, events in self.epoll.poll(0):
            conn = self.by_fd.get(cfd)
            if conn is None:
                continue
            if events & select.EPOLLOUT and not conn.deaf:
                self._flush(conn)
            if not self._reading(conn):
                if events & _ENDED and conn.mask:   # its end is read once it is read again,
                    self.epoll.unregister(cfd)      # not reported at every turn until then
                    conn.mask = 0
            elif events & _READABLE and conn.peer in self.by_peer:
                self._read(conn)

    def read_all(self, pids: Collection[int | None] = ()) -> None:
        """Reads whatever every connection holds, those waiting to be accepted included: what
        was written before a query, a record or a bind was sent is handled before it. A held
        connection is read only if its process is in ``pids`` (its actor is bound or unbound)."""
        self._accept()
        for fd, _ in self.peek.poll(0):     # one system call, not one read per connection
            conn = self.by_fd.get(fd)
            if conn is None or (conn.peer in self.held and conn.cred[2] not in pids):
                continue
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
        if len(conn.stream.out) > MAX_UNREAD:      # it reads no answers: it hears the end, and connects again
            log.warning("chain: pid %d left %d bytes of answers unread; ending its stream", conn.cred[2],
                        len(conn.stream.out))
            self._deaf(conn)
            with contextlib.suppress(OSError):
                conn.stream.sock.shutdown(socket.SHUT_WR)
        elif conn.stream.out:
            self._watch(conn)

    def pause(self, paused: bool) -> None:
        """While the chain cannot write, events are left unread, in the kernel's hands (their
        writers run out of room and wait): what the chain reads, it must be able to keep."""
        if paused != self.paused:
            self.paused = paused
            for conn in self.by_fd.values():
                self._watch(conn)

    def hold(self, peer: bytes, until: float) -> None:
        """Leaves ``peer``'s connection unread until then (its answers still go)."""
        conn = self.by_peer.get(peer)
        if conn is not None:
            self.held[peer] = max(until, self.held.get(peer, until))
            self._watch(conn)

    def next_release(self) -> float | None:
        return min(self.held.values()) if self.held else None

    def tick(self, now: float) -> list[int]:
        """Accepts again, and reads again the held connections, when their time has come; the
        processes of those that wrote more meanwhile (the hold kept them waiting)."""
        if self.accept_at is not None and now >= self.accept_at:
            self.accept_at = None
            self.poller.register(self.listener.fileno(), zmq.POLLIN)
        waited: list[int] = []
        if self.held:
            for peer in [p for p, until in self.held.items() if until <= now]:
                del self.held[peer]
                conn = self.by_peer[peer]
                if _waiting(conn):
                    waited.append(conn.cred[2])
                self._watch(conn)
        return waited

    def sweep(self, now: float, bound: Callable[[int], bool]) -> None:
        """Closes the connections whose process has been no actor's worker (``bound``) for
        UNBOUND_FOR: a stranger must not hold the chain's descriptors (PER_PROCESS bounds
        each process, not how many processes connect)."""
        for conn in list(self.by_fd.values()):
            if bound(conn.cred[2]):
                conn.bound_at = now
            elif now - conn.bound_at > UNBOUND_FOR:
                self._drop(conn, f"its process has been no actor's worker for {UNBOUND_FOR:g}s")

    def _reading(self, conn: Conn) -> bool:
        return not self.paused and conn.peer not in self.held

    def _watch(self, conn: Conn) -> None:
        mask = (select.EPOLLIN if self._reading(conn) else 0) | \
            (select.EPOLLOUT if conn.stream.out and not conn.deaf else 0)
        if mask == conn.mask:
            return
        fd = conn.stream.fileno()
        if not mask:
            self.epoll.unregister(fd)
        elif conn.mask:
            self.epoll.modify(fd, mask)
        else:
            self.epoll.register(fd, mask)
        conn.mask = mask

    def close(self) -> None:
        for conn in list(self.by_fd.values()):
            self._drop(conn, "")
        if self.accept_at is None:
            self.poller.unregister(self.listener.fileno())
        self.poller.unregister(self.epoll.fileno())
        self.epoll.close()
        self.listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:            # out of descriptors: the backlog waits a while
                log.error("chain: cannot accept workers' event streams: %s (trying again in %gs)", e,
                          ACCEPT_RETRY)
                if self.accept_at is None:
                    self.poller.unregister(self.listener.fileno())
                    self.accept_at = time.monotonic() + ACCEPT_RETRY
                return
            stream = Stream(sock, protocol.MAX_MESSAGE)
            cred = peercred.of_socket(sock)
            if sum(1 for c in self.by_fd.values() if c.cred[2] == cred[2]) >= PER_PROCESS:
                self.warnings.warning("streams", f"chain: pid {cred[2]} opened more than {PER_PROCESS} event "
                                                 f"streams; closing the newest")
                stream.close()
                continue
            self.opened += 1
            conn = Conn(stream, StreamPeer(b"stream:%d" % self.opened), cred, time.monotonic())
            self.by_fd[stream.fileno()] = conn
            self.by_peer[conn.peer] = conn
            self.peek.register(stream.fileno(), select.POLLIN)
            self._watch(conn)

    def _read(self, conn: Conn) -> None:
        try:
            for frames in conn.stream.receive():
                self.inbox.append((conn.peer, conn.cred, frames))
        except Closed as e:
            self._drop(conn, str(e))

    def _flush(self, conn: Conn) -> None:
        try:
            if conn.stream.flush():
                self._watch(conn)
        except Closed:
            self._deaf(conn)

    def _deaf(self, conn: Conn) -> None:
        """Its worker is gone (or shut its end): what it wrote is still read, to the end."""
        conn.deaf = True
        conn.stream.out.clear()
        self._watch(conn)

    def _drop(self, conn: Conn, why: str) -> None:
        if why and not why.startswith(("closed by the other end", "cannot read: ECONNRESET")):
            self.warnings.warning("closed", f"chain: closed the event stream of pid {conn.cred[2]}: {why}")
        fd = conn.stream.fileno()
        if conn.mask:
            self.epoll.unregister(fd)
        self.peek.unregister(fd)
        del self.by_fd[fd]
        del self.by_peer[conn.peer]
        self.held.pop(conn.peer, None)
        conn.stream.close()


def _waiting(conn: Conn) -> bool:
    """Whether more was written on ``conn`` than it has read (a read would not wait)."""
    if conn.stream.inbuf:
        return True
    try:
        return bool(conn.stream.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:             # nothing yet (or its end: said by the next read)
        return False

"""A worker's sockets and the loop that serves them: receive, dispatch, ask and wait, answer.

Three sockets of its own (made by the spare before it knows its actor) and one per peer it
talks to:
  control  DEALER -> the server (hello, lifecycle, supervision, messages from clients)
  chain    DEALER -> the chain process (resume and queries; events go on a stream of their
           own, worker.chainlink)
  inbox    ROUTER <- other actors' DEALERs (messages in, replies to them out); each message's
           sender is the one its ticket vouches for (``worker.senders``)
Messages are dispatched by kind to whoever registered for it (``on``, ``on_chain``);
answers to this worker's own requests are kept in ``replies`` for whoever waits on them.
Events leave for the chain before any effect that follows them (``reply``).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from theater import protocol
from theater.errors import ProtocolError, Refused, Timeout, from_wire
from theater.paths import Home

from . import wire
from .chainlink import ChainLink
from .mailbox import Route
from .senders import Senders
from .watchdog import Watchdog

log = logging.getLogger("theater.worker")

# A worker sends a heartbeat when the control socket has been quiet this long; the
# server calls a worker hung after several missed beats (plus its call timeout).
HEARTBEAT_INTERVAL = 2.0
# How long a request made outside any call (start-up, exit) waits for its answer.
DEFAULT_TIMEOUT = 10.0
# Peers' connections waiting to be accepted by the inbox (libzmq's own default).
INBOX_BACKLOG = 100

_POLLIN, _POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)

Answer = tuple[dict[str, Any], list[bytes]]
# (header, frames, how to answer it, the socket it came on)
Handler = Callable[[dict[str, Any], list[bytes], Route, zmq.Socket], None]


@dataclass
class Sockets:
    """A worker's own sockets, made by the spare before it knows its actor (connecting takes a
    ZeroMQ handshake: better done before the spawn than during it). The server learns which
    actor a connection is from the worker's hello."""

    control: zmq.Socket
    chain: zmq.Socket
    inbox: zmq.Socket
    endpoint: str

    @staticmethod
    def listen(home: Home) -> int:
        """The inbox's unix socket, bound and listening (its descriptor, for ``open``). A spare makes
        it while still the server's user: workers may not make, rename or remove files in run/w (one
        could put its socket in another's place); the fork server removes it once the worker exits."""
        path = home.worker_socket(os.getpid())
        path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(str(path))
            s.listen(INBOX_BACKLOG)
            return s.detach()

    @classmethod
    def open(cls, ctx: zmq.Context, home: Home, inbox_fd: int) -> Sockets:
        """The sockets, the inbox on ``inbox_fd`` (from ``listen``: libzmq takes it over)."""
        # unguessable: the server and the chain attribute messages by pid, and a routing id
        # nobody can predict cannot be claimed by another process after this one exits
        identity = b"w" + os.urandom(15)

        def dealer(endpoint: str, hwm: int) -> zmq.Socket:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, identity)
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.LINGER, 2000)
            sock.connect(endpoint)
            return sock
        inbox = ctx.socket(zmq.ROUTER)      # no ROUTER_HANDOVER: libzmq's routing ids cannot be taken over
        inbox.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        inbox.setsockopt(zmq.USE_FD, inbox_fd)
        endpoint = home.worker_endpoint(os.getpid())
        inbox.bind(endpoint)
        return cls(dealer(home.control_endpoint, 1000), dealer(home.chain_endpoint, 1000), inbox, endpoint)


class Loop:
    def __init__(self, ctx: zmq.Context, sockets: Sockets, actor_id: str, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.own = actor_id.encode()
        self.control, self.chain_sock, self.inbox = sockets.control, sockets.chain, sockets.inbox
        self.endpoint = sockets.endpoint
        self.poller = zmq.Poller()
        for sock in (self.control, self.chain_sock, self.inbox):
            self.poller.register(sock, zmq.POLLIN)
        self.replies: dict[str, Answer] = {}
        self.asked: set[str] = set()                               # our requests' ids, until answered or given up on
        self.senders = Senders(name)                               # who wrote each inbox message
        self.to_peers: set[zmq.Socket] = set()                      # our connections to peers (worker.peers)
        self.awaited: dict[str, zmq.Socket | None] = {}            # replies waited for, and where (``wait_reply``)
        self.writable: dict[zmq.Socket, Callable[[], None]] = {}   # sockets watched for room (see ``watch``)
        self.fds: dict[int, Callable[[int], None]] = {}           # plain descriptors watched (``watch_fd``)
        self.inbox_paused = False                                   # the mailbox is full: see ``pause_inbox``
        self.on: dict[str, Handler] = {}                       # kinds from the server and peers
        self.on_chain: dict[str, Callable[[dict[str, Any]], None]] = {}   # kinds from the chain
        self.chain: ChainLink | None = None                    # once resumed: shipping and resends
        self.watchdog: Watchdog | None = None
        self.call_deadline: Callable[[], float | None] = lambda: None
        self.heartbeat: Callable[[], dict[str, Any]] = dict
        self.last_control = time.monotonic()

    # ---- out ------------------------------------------------------------------------------

    def before_effect(self) -> None:
        """Waits (serving the sockets) until every event emitted so far is safe (written to the
        chain's stream, or acknowledged: worker.chainlink): before
        an effect the running call waits on (a request, a channel open, a spawn, an outside
        request), which must not leave ahead of the events that led to it, nor ahead of the
        messages sent before it."""
        chain = self.chain
        if chain is None:
            return
        chain.seal()
        if chain.durable:
            return
        chain.sync()
        if chain.durable:
            return
        deadline = self.call_deadline() or time.monotonic() + DEFAULT_TIMEOUT
        while not chain.durable:
            if self.watchdog is not None and self.watchdog.stop_requested:
                raise Refused("the actor is stopping")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f" ({chain.refusal})" if chain.refusal else ""
                raise Timeout(f"the chain did not take this call's events within its time limit{why}")
            self.pump(min(remaining, HEARTBEAT_INTERVAL))

    def wait_for_chain(self) -> None:
        """Serves the sockets while MAX_UNACKED of this actor's events wait for the chain (slow or
        stopped): a call recording faster than the chain stores waits, so the events cannot fill the
        worker's memory till the kernel kills it, losing them all. At the call's deadline, or once a
        stop is asked for, it goes on: the time limit ends the call."""
        chain = self.chain
        if chain is None or not chain.backed_up:
            return
        deadline = self.call_deadline() or time.monotonic() + DEFAULT_TIMEOUT
        while chain.backed_up and not (self.watchdog is not None and self.watchdog.stop_requested):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.pump(min(remaining, HEARTBEAT_INTERVAL))

    def take_acks(self) -> None:
        """Handles the chain's acknowledgements waiting, if any effect waits on them."""
        if self.chain is not None:
            self.chain.take_acks()

    def reply(self, route: Route, header: dict[str, Any], *frames: bytes, quiet: bool = False,
              held: bool = True, prompt: bool = True) -> None:
        """Answers (or writes on a channel to) whoever a message came from, once the chain holds
        the events that led to it: nobody sees an effect the chain could lose. A refusal, which
        carries nothing of the actor's, goes at once (``held=False``); what nobody waits for
        goes when the chain acknowledges in its own time (``prompt=False``: no extra commit)."""
        kind, ident = route
        if kind != "control" and ident == self.own:
            return                              # our own message: nobody waits on it
        msg = protocol.encode(header, *frames)
        sock, out = (self.control, msg) if kind == "control" else (self.inbox, [ident, *msg])

        def release() -> None:
            try:
                if kind == "control":
                    sock.send_multipart(out)        # the server reads its control socket promptly
                else:
                    wire.send(sock, out)
            except zmq.ZMQError as e:
                if not quiet:
                    log.warning("%s: a reply to %s was dropped: %s", self.name, kind, e)
        if held and self.chain is not None:
            self.chain.hold(release)
            self.chain.seal(prompt)
            return
        release()

    def send_control(self, header: dict[str, Any], *frames: bytes) -> None:
        self.control.send_multipart(protocol.encode(header, *frames))
        self.last_control = time.monotonic()

    def ask(self, sock: zmq.Socket, header: dict[str, Any], *frames: bytes) -> str:
        """Sends a request without waiting; its id, for ``wait_reply``."""
        rid = header.setdefault("id", os.urandom(8).hex())
        sock.send_multipart(protocol.encode(header, *frames))
        self.asked.add(rid)
        if sock is self.control:
            self.last_control = time.monotonic()
        return rid

    def control_request(self, header: dict[str, Any], *frames: bytes, timeout: float | None = None,
                        stoppable: bool = True) -> Answer:
        """Asks the server and waits for its answer; its error is raised as what it was.
        ``stoppable=False``: a stop request does not cut the wait short (what a stopping worker says)."""
        return answer(self.wait_reply(self.ask(self.control, header, *frames), timeout=timeout, stoppable=stoppable))

    def chain_request(self, header: dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> Answer:
        return answer(self.wait_reply(self.ask(self.chain_sock, header), timeout=timeout))

    def wait_reply(self, rid: str, timeout: float | None = None, check: Callable[[], None] | None = None,
                   sock: zmq.Socket | None = None, peer: str | None = None, stoppable: bool = True) -> Answer:
        """Pumps every socket until the reply to ``rid`` arrives, the call's deadline passes, ``check``
        raises (the peer is gone), or (if ``stoppable``) a stop is asked for; taken only from ``sock``, if given."""
        if timeout is not None:
            deadline = time.monotonic() + timeout
        else:
            deadline = self.call_deadline() or time.monotonic() + DEFAULT_TIMEOUT
        self.awaited[rid] = sock
        try:
            return self._wait(rid, deadline, check, peer, stoppable)
        finally:                                # given up on (a timeout, a stop) or taken
            self.awaited.pop(rid, None)
            self.asked.discard(rid)
            self.replies.pop(rid, None)

    def _wait(self, rid: str, deadline: float, check: Callable[[], None] | None, peer: str | None,
              stoppable: bool) -> Answer:
        while rid not in self.replies:
            if check is not None:
                check()
            if stoppable and self.watchdog is not None and self.watchdog.stop_requested:
                raise Refused("the actor is stopping")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"no reply{f' from {peer}' if peer else ''} before this call's time limit "
                              f"(its last moments are kept for the actor to answer)")
            # asleep in poll, not spinning: on a 2-core VM a requester spinning for its reply took
            # the core its peer and the chain needed (actor -> actor round trip 0.62 ms spinning
            # up to 0.5 ms, 0.53 ms not)
            self.pump(min(remaining, HEARTBEAT_INTERVAL))
        return self.replies.pop(rid)

    # ---- in -------------------------------------------------------------------------------

    def pump(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for traffic and handles all that is there; ships
        pending events once they are due (see chainlink.FLUSH_INTERVAL)."""
        chain = self.chain
        if chain is not None:
            if chain.sync_wanted:               # effects wait: their events go now
                chain.sync()
            now = time.monotonic()
            due = chain.flush_in(now)
            if due is not None:
                if due <= 0:
                    chain.flush()
                else:
                    timeout = min(timeout, due)
            retry = chain.retry_in(now)
            if retry is not None:
                timeout = min(timeout, retry)
        # pyzmq truncates the timeout to whole milliseconds: round up, or a wait shorter than
        # 1 ms becomes a busy loop
        for sock, ev in self.poller.poll(math.ceil(timeout * 1000)):
            if isinstance(sock, int):
                on_ready = self.fds.get(sock)
                if on_ready is not None:
                    on_ready(ev)
                elif self.watchdog is not None:
                    self.watchdog.drain_wake()
                continue
            if sock.closed:             # a peer dropped earlier in this round (the server's notice)
                continue
            if ev & _POLLOUT and (on_room := self.writable.get(sock)) is not None:
                on_room()
            if ev & _POLLIN:
                self.drain(sock)
        now = time.monotonic()
        if chain is None:
            return
        if now - self.last_control >= HEARTBEAT_INTERVAL:
            self.send_control({"k": "heartbeat", **self.heartbeat()})
        chain.maybe_resend(now)

    def drain(self, sock: zmq.Socket) -> None:
        """Handles every message waiting on ``sock`` (a poll or ``readable`` just said it holds one)."""
        frames = wire.recv(sock)
        while frames is not None:
            self._dispatch(sock, frames)
            if sock.closed or (sock is self.inbox and self.inbox_paused):
                return      # a peer's, dropped meanwhile; or the mailbox just filled (the rest waits in ZeroMQ)
            frames = wire.recv(sock) if wire.readable(sock) else None

    def drain_inbox(self, most: int) -> None:
        """Reads up to ``most`` messages already waiting in the inbox, paused or not (the actor ends)."""
        for _ in range(most):
            frames = wire.recv(self.inbox) if wire.readable(self.inbox) else None
            if frames is None:
                return
            self._dispatch(self.inbox, frames)

    def pause_inbox(self, paused: bool) -> None:
        """Stops (or resumes) reading other actors' messages. While it is stopped they wait in
        ZeroMQ's queues, and once those are full, in their senders' workers, whose ``send``
        waits for room (worker.outgoing): back-pressure instead of refusals."""
        if paused == self.inbox_paused:
            return
        self.inbox_paused = paused
        if paused:
            self.poller.unregister(self.inbox)
        else:
            self.poller.register(self.inbox, zmq.POLLIN)

    def watch_fd(self, fd: int, on_ready: Callable[[int], None] | None, writable: bool = False) -> None:
        """Calls ``on_ready(events)`` when ``fd`` is readable (or, if asked, writable); None: stop."""
        if on_ready is None:
            if self.fds.pop(fd, None) is not None:
                self.poller.unregister(fd)
            return
        events = zmq.POLLIN | (zmq.POLLOUT if writable else 0)
        if fd in self.fds:
            self.poller.modify(fd, events)
        else:
            self.poller.register(fd, events)
        self.fds[fd] = on_ready

    def chain_message(self, frames: list[bytes]) -> None:
        """A message from the chain on the events' stream (an acknowledgement, a refusal)."""
        self._dispatch(self.chain_sock, frames)

    def watch(self, sock: zmq.Socket, on_room: Callable[[], None] | None) -> None:
        """Calls ``on_room`` when ``sock`` has room to send again (None: stop watching)."""
        if on_room is None:
            self.writable.pop(sock, None)
            self.poller.modify(sock, zmq.POLLIN)
        else:
            self.writable[sock] = on_room
            self.poller.modify(sock, zmq.POLLIN | zmq.POLLOUT)

    def _dispatch(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        ident = None
        if sock is self.inbox:
            ident, frames = frames[0], frames[1:]
        peer = sock is self.inbox or sock in self.to_peers
        try:
            header, body = protocol.decode(frames)
        except ProtocolError as e:
            if peer:
                self.senders.drop(f"malformed message: {e}")
            else:
                log.warning("%s: dropped a malformed message: %s", self.name, e)
            return
        kind = header["k"]
        if peer and not (self.senders.vouched(header) if ident is not None else self.senders.answer(header)):
            return
        if sock is self.chain_sock:
            handler = self.on_chain.get(kind)
            if handler is not None:
                handler(header)
            else:
                self._answered(header.get("re"), header, body)
        elif kind == "reply":
            # from a peer, only a reply waited for on that connection (not late, made up, or another's)
            if not peer or self.awaited.get(header["rid"]) is sock:
                self.replies[header["rid"]] = (header, body)
        elif kind in ("ok", "error"):
            self._answered(header.get("re"), header, body)
        else:
            on = self.on.get(kind)
            if on is not None:
                on(header, body, ("peer", ident) if ident is not None else ("control", None), sock)

    def _answered(self, rid: Any, header: dict[str, Any], body: list[bytes]) -> None:
        """Keeps an answer still waited for: a late one, or one to nothing asked, would stay for good."""
        if isinstance(rid, str) and rid in self.asked:
            self.replies[rid] = (header, body)

    def close(self) -> None:
        for sock in (self.control, self.chain_sock, self.inbox):
            sock.close()


def answer(reply: Answer) -> Answer:
    """A reply, or the error it carries raised as what it was."""
    header, frames = reply
    if header["k"] == "error":
        raise from_wire(header["code"], header["error"])
    return header, frames

"""The console's one connection to the server, and the live pages it feeds.

The hub is a thread of the console's process with a DEALER on the management socket's
console endpoint (``run/console.sock``, bound by the server beside ``--listen``, before any
CURVE setting, so it needs no keys whatever ``--listen`` is; the socket file is private to
the server's user, like the home). It is a client like the CLI: every
byte the console shows comes from a management request (``list``, ``inspect``, ``tree``,
``events``, ``verify``, ``chains``) or a push (``watch``'s ``actors_changed``); it never
reads the loop's objects. HTTP threads hand it requests
(``call``) and wait for the answer; only this thread touches the socket.

Live pages are ``Stream``s (one per server-sent-events connection). The hub:
* follows each actor a page looks at (once however many pages, until the last closes): every
  ``LIVE_EVERY`` it asks for what its chain stored since the last time (an ``events`` request
  for the newest ``LIVE_BATCH`` of them), decodes them once and passes them on; the rest are
  counted (``skipped``; the chain page has them all). A busy actor so costs the server and
  the console a few requests a second, not a relayed message per event: a page open on an
  actor must not slow the actor it shows;
* tells every page when actors come, go (``watch``) or change status (seen in samples);
* samples memory, CPU and events/s every ``samples.SAMPLE_EVERY`` into a short ring.
A page that does not read its stream fast enough loses notices, and is told how many.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
import zmq

from theater import protocol
from theater.errors import ProtocolError, Refused, Timeout, Unreachable, from_wire

from . import render
from .samples import SAMPLE_EVERY, Sample, Samples, read_processes
from .streams import LIVE_BATCH, MAX_STREAMS, Follow, Stream

log = logging.getLogger("theater.console")

# How long a page waits for the server's answer.
CALL_TIMEOUT = 10.0
# A followed actor's new events are read this often (at most LIVE_BATCH each time).
LIVE_EVERY = 0.2

Then = Callable[[dict[str, Any], list[bytes]], None]


class Hub:
    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.samples = Samples()
        self.lengths: dict[str, int] = {}          # chain lengths at the last sample
        self._lock = threading.Lock()               # guards _inbox, _closed, _pages
        self._inbox: list[tuple[Any, ...]] = []
        self._closed = False
        self._pages = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = threading.Event()
        # the rest belongs to the hub thread
        self._waiting: dict[str, tuple[float, Then]] = {}
        self._ids = itertools.count(1)
        self._streams: set[Stream] = set()
        self._follows: dict[str, Follow] = {}       # by the actor key pages gave
        self._sampling = False
        self.sock: zmq.Socket | None = None
        self.thread = threading.Thread(target=self._run, name="console-hub", daemon=True)

    # ---- any thread -------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ends the thread; every waiting page is answered (the server is stopping)."""
        self._stopping.set()
        self._wake()
        if self.thread.is_alive():
            self.thread.join()
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def release(self) -> None:
        """Closes the wake-up pipe, once no other thread can use the hub any more."""
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def call(self, kind: str, timeout: float = CALL_TIMEOUT, **fields: Any) -> tuple[dict[str, Any], list[bytes]]:
        """One management request; its answer's (header, frames), or the TheaterError it reported."""
        done: concurrent.futures.Future[tuple[dict[str, Any], list[bytes]]] = concurrent.futures.Future()

        def then(header: dict[str, Any], frames: list[bytes]) -> None:
            if header.get("k") == "error":
                done.set_exception(from_wire(header.get("code", "error"), header.get("error", "")))
            else:
                done.set_result((header, frames))
        self._submit(("call", kind, fields, then))
        try:
            return done.result(timeout)
        except concurrent.futures.TimeoutError:
            raise Timeout(f"no answer from the server within {timeout:g}s") from None

    def open_stream(self, actor: str | None) -> Stream:
        with self._lock:
            if self._closed:
                raise Unreachable("the server is stopping")
            if self._pages >= MAX_STREAMS:
                raise Refused(f"{MAX_STREAMS} live pages are open already: close one")
            self._pages += 1
        stream = Stream(actor)
        self._submit(("open", stream))
        return stream

    def close_stream(self, stream: Stream) -> None:
        with self._lock:
            self._pages -= 1
        self._submit(("close", stream))

    def _submit(self, item: tuple[Any, ...]) -> None:
        with self._lock:
            if not self._closed:
                self._inbox.append(item)
                item = ()
        if item and item[0] == "call":
            item[3](_stopping_error(), [])
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):       # a wake-up is pending already: one is enough
            os.write(self._wake_w, b"\0")

    # ---- the hub thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        sock = self.sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._request("watch", {}, self._noted("watch"))
        next_sample = next_read = time.monotonic()
        try:
            while not self._stopping.is_set():
                due = min(next_sample, next_read) if self._follows else next_sample
                poller.poll(max(0.0, due - time.monotonic()) * 1000)
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
                if time.monotonic() >= next_sample:
                    next_sample = time.monotonic() + SAMPLE_EVERY
                    self._step(self._expire, time.monotonic())
                    self._step(self._sample)
                self._step(self._take_inbox)
                self._step(self._receive)
                if self._follows and time.monotonic() >= next_read:
                    next_read = time.monotonic() + LIVE_EVERY
                    self._step(self._read_tails)
        except zmq.ZMQError as e:
            log.error("the console's connection to the server failed (%s); the console stops", e)
        finally:
            self._close(sock)

    @staticmethod
    def _step(fn: Callable[..., None], *args: Any) -> None:
        """A bug in one step is logged; the hub and every page keep going."""
        try:
            fn(*args)
        except zmq.ZMQError:
            raise
        except Exception:
            log.exception("console: internal error (continuing)")

    def _close(self, sock: zmq.Socket) -> None:
        with self._lock:
            self._closed = True
            left, self._inbox = self._inbox, []
        for item in left:
            if item[0] == "call":
                item[3](_stopping_error(), [])
            elif item[0] == "open":
                self._streams.add(item[1])
        for _, then in self._waiting.values():
            _guarded(then, _stopping_error(), [])
        self._waiting.clear()
        for stream in self._streams:
            stream.end()
        sock.close(linger=0)

    def _take_inbox(self) -> None:
        with self._lock:
            items, self._inbox = self._inbox, []
        for item in items:
            if item[0] == "call":
                self._request(item[1], item[2], item[3])
            elif item[0] == "open":
                self._streams.add(item[1])
                if item[1].actor is not None:
                    self._follow(item[1].actor, item[1])
                else:
                    item[1].ready.set()
            elif item[1] in self._streams:
                self._streams.discard(item[1])
                if item[1].actor is not None:
                    self._unfollow(item[1].actor)

    def _request(self, kind: str, fields: dict[str, Any], then: Then) -> None:
        assert self.sock is not None
        rid = f"h{next(self._ids)}"
        try:
            self.sock.send_multipart(protocol.encode({"k": kind, "id": rid, **fields}), zmq.NOBLOCK)
        except zmq.Again:
            _guarded(then, {"k": "error", "code": "unreachable", "error": "the server is not reading requests"}, [])
            return
        self._waiting[rid] = (time.monotonic() + 3 * CALL_TIMEOUT, then)

    def _expire(self, now: float) -> None:
        """A request the server never answered is given up on (its page has long stopped waiting)."""
        for rid in [rid for rid, (deadline, _) in self._waiting.items() if deadline < now]:
            _, then = self._waiting.pop(rid)
            _guarded(then, {"k": "error", "code": "timeout", "error": "no answer from the server"}, [])

    def _receive(self) -> None:
        assert self.sock is not None
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                header, data = protocol.decode(frames)
            except ProtocolError as e:
                log.warning("console: a message from the server was not understood: %s", e.message)
                continue
            if "re" in header:
                entry = self._waiting.pop(header["re"], None)
                if entry is not None:
                    _guarded(entry[1], header, data)
            elif header["k"] == "actors_changed":
                self._broadcast("actors", {"actor": header["actor"], "status": header["status"]})

    def _noted(self, what: str) -> Then:
        def then(header: dict[str, Any], _: list[bytes]) -> None:
            if header.get("k") == "error":
                log.warning("console: %s failed: %s", what, header.get("error"))
        return then

    # ---- following actors ---------------------------------------------------------------------------

    def _follow(self, actor: str, stream: Stream) -> None:
        f = self._follows.get(actor)
        if f is None:
            f = self._follows[actor] = Follow()
            self._request("events", {"actor": actor, "last": True, "limit": 1}, partial(self._started, actor, f))
        f.pages += 1
        if f.next is None:
            f.waiting.append(stream)
        else:
            stream.ready.set()

    def _started(self, actor: str, f: Follow, header: dict[str, Any], _: list[bytes]) -> None:
        """Where the actor's chain ends as its first page opens: its pages are shown what follows."""
        for stream in f.waiting:
            stream.ready.set()
        f.waiting.clear()
        if header.get("k") == "error":
            log.warning("console: cannot follow actor %s: %s", actor, header.get("error"))
            if self._follows.get(actor) is f:       # the next page asks again (it waited 10 s for nothing)
                del self._follows[actor]
            return
        events = header["events"]
        f.next = events[-1]["seq"] + 1 if events else 0

    def _unfollow(self, actor: str) -> None:
        f = self._follows.get(actor)
        if f is None:
            return
        f.pages -= 1
        if f.pages <= 0:
            del self._follows[actor]

    def _read_tails(self) -> None:
        """Asks for what each followed actor stored since the last time (one request in flight each)."""
        for actor, f in self._follows.items():
            if f.next is not None and not f.asking:
                f.asking = True
                self._request("events", {"actor": actor, "since": f.next, "last": True, "limit": LIVE_BATCH},
                              partial(self._tail, actor, f))

    def _tail(self, actor: str, f: Follow, header: dict[str, Any], frames: list[bytes]) -> None:
        """Decodes an actor's new events once for all its pages (the newest LIVE_BATCH; the rest counted)."""
        f.asking = False
        events = header.get("events") if header.get("k") == "ok" else None
        if not events or f.next is None or self._follows.get(actor) is not f:
            return
        skipped = events[0]["seq"] - f.next
        f.next = events[-1]["seq"] + 1
        payload = orjson.dumps({"actor": actor, "skipped": skipped,
                                "events": [render.live_event(m, d) for m, d in zip(events, frames, strict=True)]})
        for stream in self._streams:
            if stream.actor == actor:
                stream.put("events", payload)

    def _broadcast(self, name: str, value: Any) -> None:
        payload = orjson.dumps(value)
        for stream in self._streams:
            stream.put(name, payload)

    # ---- samples ------------------------------------------------------------------------------------

    def _sample(self) -> None:
        if not self._sampling:         # the last one is still waiting for its answers: skip this one
            self._sampling = True
            self._request("list", {}, self._listed)

    def _listed(self, header: dict[str, Any], _: list[bytes]) -> None:
        if header.get("k") == "error":
            self._sampling = False
            return
        self._request("chains", {}, partial(self._chained, header["actors"]))

    def _chained(self, rows: list[dict[str, Any]], header: dict[str, Any], _: list[bytes]) -> None:
        self._sampling = False
        if header.get("k") == "ok":
            self.lengths = {c["actor"]: c["length"] for c in header["chains"]}
        procs = read_processes([r["pid"] for r in rows if r.get("pid")])
        sample, changed = self.samples.add(time.time(), rows, self.lengths, procs)
        self._tell_sample(sample)
        if changed:
            self._broadcast("actors", {"actor": None, "status": None})

    def _tell_sample(self, sample: Sample) -> None:
        made: dict[str | None, bytes] = {}
        for stream in self._streams:
            payload = made.get(stream.actor)
            if payload is None:
                use = sample.total if stream.actor is None else sample.actors.get(stream.actor)
                payload = made[stream.actor] = orjson.dumps(
                    {"t": sample.t, **use.to_json()} if use is not None else None)
            stream.put("sample", payload)


def _stopping_error() -> dict[str, Any]:
    return {"k": "error", "code": "unreachable", "error": "the server is stopping"}


def _guarded(then: Then, header: dict[str, Any], frames: list[bytes]) -> None:
    """A bug in one continuation is logged; the hub and every page keep going."""
    try:
        then(header, frames)
    except Exception:
        log.exception("console: internal error (continuing)")

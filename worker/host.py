"""What a host handler may do with its actor: the worker's parts, narrowed to what handlers need.

Handlers get this, never the worker's internals: record events, call the actor's exports,
answer messages, ask the server, reach other actors (``peers``), ask the gateway (outside
requests and the content store), end the actor. The export
calls become possible once the component is instantiated (``calls`` is set then); the host
functions are linked before that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from theater import events
from theater.errors import Refused
from theater.manifest import Manifest

from .calls import Calls
from .gateway import Gateway
from .loop import HEARTBEAT_INTERVAL, Answer, Loop
from .mailbox import Incoming, Mailbox, Route
from .peers import Peers
from .recorder import Recorder

log = logging.getLogger("theater.worker")

# How long get-chain waits for the chain to hold every event so far.
SETTLE_TIMEOUT = 10.0
# Messages a worker may take past its mailbox limit when a peer goes (Host.read_inbox): what
# ZeroMQ queues for one peer.
INBOX_EXTRA = 1000
# What one event of a chain handed to the actor takes in its memory beside its data and type:
# its hashes, the record's fields.
EVENT_OVERHEAD = 96


def read_chain(fetch: Callable[[int], Answer], room: int) -> tuple[list[events.Event], bool]:
    """A chain from its start, page by page (the chain answers a page at a time: a first page
    alone looked like the whole), as far as ``room`` bytes of the actor's memory take it; the
    events, and whether they are all of them. ``fetch(since)`` asks for the page from ``since``."""
    got: list[events.Event] = []
    since = 0
    while True:
        header, frames = fetch(since)
        page = [events.from_wire(header["actor"], m, d) for m, d in zip(header["events"], frames, strict=True)]
        for e in page:
            room -= len(e.data) + len(e.type) + EVENT_OVERHEAD
            if room < 0:
                return got, False
            got.append(e)
        if not header.get("more"):
            return got, True
        since = header["next"]


class Host:
    def __init__(self, actor_id: str, name: str, manifest: Manifest, loop: Loop, mailbox: Mailbox,
                 peers: Peers, recorder: Recorder, shutdown: Callable[[bytes | None], None],
                 gateway: Gateway | None = None, base: str = ".", environ: Mapping[str, str] | None = None) -> None:
        self.actor_id = actor_id
        self.name = name
        self.manifest = manifest
        self.base = base                       # the manifest's directory: relative paths in grants start here
        self.environ = dict(environ or {})     # the server's variables the environment grant lets through
        self.peers = peers
        self.log = log
        self.calls: Calls | None = None
        self._loop = loop
        self._mailbox = mailbox
        self._recorder = recorder
        self._shutdown = shutdown
        self._gateway = gateway

    def record(self, event_type: str, value: Any) -> None:
        self._recorder.record(event_type, value)

    def exports(self, interface: str, fn: str) -> bool:
        return self.calls is not None and self.calls.exports(interface, fn)

    def call(self, interface: str, fn: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
        """Runs one of the actor's exports (the actor fails if it traps or returns Err)."""
        assert self.calls is not None
        return self.calls.call(interface, fn, params)

    def reply(self, route: Route, header: dict[str, Any], *frames: bytes, quiet: bool = False,
              held: bool = True) -> None:
        """Answers a message once the events that led to it are durable (``held``), or at once (a
        refusal, which carries nothing of the actor's)."""
        self._loop.reply(route, header, *frames, quiet=quiet, held=held)

    def refuse(self, item: Incoming, error: str) -> None:
        self._mailbox.refuse(item, error)

    def to_self(self, what: str, header: dict[str, Any], payload: bytes = b"") -> None:
        self._mailbox.put_local(what, header, payload)

    def over_limit(self, answer: bytes) -> str | None:
        """Why an answer (a reply, a channel's first message, a child's state) is refused: it is held
        to this actor's message limit like any message to it, so a peer cannot make it fail by
        answering with more than its memory takes."""
        return self.manifest.limits.too_large(self.actor_id, len(answer))

    def read_inbox(self) -> None:
        """Takes what waits in the inbox now, paused or not, up to a second mailbox-full past the
        limit (and at least INBOX_EXTRA): what a peer that went had sent comes before what follows
        its going (see MessageServer)."""
        limit = self._mailbox.limit
        self._loop.drain_inbox(max(0, limit + max(limit, INBOX_EXTRA) - len(self._mailbox)))

    def before_effect(self) -> None:
        """Call before anything leaves the worker because of what the actor did (a request to the
        outside world): the events that led to it must not be lost once the effect is seen."""
        self._loop.before_effect()

    def call_deadline(self) -> float | None:
        """When what the running export call waits for must be given up (``time.monotonic()``), if
        one is running: a little before the call's time limit (``calls.WAIT_MARGIN``)."""
        return self._loop.call_deadline()

    def wait(self, seconds: float) -> None:
        """Lets ``seconds`` pass while serving the sockets (control traffic, acknowledgements,
        heartbeats go on; ``wait(0)`` serves them once); raises Refused as soon as the actor
        is asked to stop."""
        self.wait_until(lambda: False, time.monotonic() + seconds)

    def wait_until(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Serves the sockets (at least once) until ``ready()`` or ``deadline`` (``time.monotonic()``);
        whether it is ready. Raises Refused as soon as the actor is asked to stop."""
        watchdog = self._loop.watchdog
        while True:
            if watchdog is not None and watchdog.stop_requested:
                raise Refused("the actor is stopping")
            left = deadline - time.monotonic()
            self._loop.pump(min(max(left, 0.0), HEARTBEAT_INTERVAL))
            if ready():
                return True
            if left <= 0:
                return False

    def ask_server(self, header: dict[str, Any], *frames: bytes) -> Answer:
        return self._loop.control_request(header, *frames)

    def ask_gateway(self, header: dict[str, Any], *frames: bytes) -> Answer:
        """Asks the gateway process (outside requests, the content store) and waits for its answer
        within the running call's deadline; call ``before_effect`` first if the request has one."""
        if self._gateway is None:
            raise Refused("this worker has no gateway")
        return self._gateway.request(header, *frames)

    def call_time_left(self) -> float | None:
        """Seconds until the running call's deadline, if a call is running."""
        deadline = self._loop.call_deadline()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def own_events(self) -> list[events.Event]:
        """This actor's chain as stored so far, including events still on their way: from its
        start, as far as its message limit takes it (a replay rebuilds the same prefix)."""
        self._recorder.settle(SETTLE_TIMEOUT)
        return read_chain(lambda since: self._loop.chain_request(
            {"k": "query", "what": "events", "actor": self.actor_id, "since": since}),
            self.manifest.limits.max_message)[0]

    def shutdown(self, data: bytes | None) -> None:
        """Ends the actor normally once the running call returns."""
        self._shutdown(data)

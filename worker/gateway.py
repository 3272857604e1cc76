"""The worker's connection to the gateway process, which makes its outside requests (``http-client``)
and keeps its content (``store``): a DEALER to ``run/gateway.sock``, connected when first needed.

The gateway knows which actor asks from this process's pid (the kernel's word), so nothing
here names the actor. A request waits for its answer within the running call's deadline,
while the worker's other sockets are served (``Loop.wait_reply``).
"""

from __future__ import annotations

import zmq

from theater import protocol

from .loop import Answer, Loop, answer


class Gateway:
    def __init__(self, loop: Loop, endpoint: str) -> None:
        self.loop = loop
        self.endpoint = endpoint
        self.sock: zmq.Socket | None = None

    def request(self, header: dict[str, object], *frames: bytes) -> Answer:
        """Sends one request and waits for its answer; a TheaterError if none comes in time."""
        if self.sock is None:
            sock = self.sock = self.loop.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
            sock.connect(self.endpoint)
            self.loop.poller.register(sock, zmq.POLLIN)
        rid = self.loop.ask(self.sock, header, *frames)
        return answer(self.loop.wait_reply(rid, peer="the gateway"))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()

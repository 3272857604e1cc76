"""Sending and receiving on a worker's hot path, without pyzmq's Python-level conveniences.

pyzmq's ``send_multipart``, ``recv_multipart`` and ``get`` run Python code per frame and
turn flags and options into enum members: about 3 us per message (measured: 0.8 us for
three frames through the Cython socket methods directly, 3.6 us through the sugar), paid
by every request, reply and event batch, and much more in a worker whose caches went cold
while it waited. These call the Cython methods with plain int flags, and read frames as
``Frame``s, whose ``more`` asks libzmq directly (``get(RCVMORE)`` costs an enum lookup a
frame). Sends and receives never block.
"""

from __future__ import annotations

import zmq
from zmq.backend import Socket as _Base

NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_MORE = int(zmq.SNDMORE) | NOBLOCK
_EVENTS = int(zmq.EVENTS)
_send, _recv, _get = _Base.send, _Base.recv, _Base.get


def send(sock: zmq.Socket, frames: list[bytes]) -> None:
    """Queues one message; raises ``zmq.Again`` when the socket's queue is full (ZeroMQ
    accepts or refuses a multipart message whole, at its first frame)."""
    last = len(frames) - 1
    for i in range(last):
        _send(sock, frames[i], _MORE)
    _send(sock, frames[last], NOBLOCK)


def readable(sock: zmq.Socket) -> bool:
    """Whether a whole message is waiting on ``sock``."""
    return bool(_get(sock, _EVENTS) & _POLLIN)


def recv(sock: zmq.Socket) -> list[bytes] | None:
    """The next waiting message, or None. Ask ``readable`` first unless a poll just said
    there is one: a ``zmq.Again`` costs more than asking (most on a round trip's path)."""
    try:
        frame = _recv(sock, NOBLOCK, False)
    except zmq.Again:
        return None
    frames = [frame.bytes]
    while frame.more:
        frame = _recv(sock, NOBLOCK, False)
        frames.append(frame.bytes)
    return frames

"""Who sent a message over a unix socket (ZeroMQ's ``ipc://``, or a plain stream):
the kernel's word, not the sender's.

For a unix-socket connection libzmq attaches the peer's credentials to every message it
receives (``SO_PEERCRED``: uid, gid and pid, taken by the kernel when the peer connected;
a peer cannot choose them), as the ``Peer-Address`` property ``localhost:<uid>:<gid>:<pid>``.
The server and the chain process attribute messages by that pid, never by the routing id
a peer picked for itself. Reading it costs ~2 us a message: once per message, not per frame.
"""

from __future__ import annotations

import socket
import struct

import zmq

_UCRED = struct.Struct("3i")      # struct ucred: pid, uid, gid


def credentials(frame: zmq.Frame) -> tuple[int, int, int] | None:
    """(uid, gid, pid) of the process at the other end of the connection ``frame`` arrived on
    (received with ``copy=False``); None if it did not come over ``ipc://``."""
    try:
        address = frame.get("Peer-Address")
    except zmq.ZMQError:
        return None
    parts = address.split(":") if isinstance(address, str) else []
    if len(parts) != 4 or parts[0] != "localhost":
        return None
    try:
        uid, gid, pid = int(parts[1]), int(parts[2]), int(parts[3])
    except ValueError:
        return None
    return uid, gid, pid


def pid(frame: zmq.Frame) -> int | None:
    """The sending process's pid, or None (not ipc://)."""
    cred = credentials(frame)
    return cred[2] if cred is not None else None


def of_socket(sock: socket.socket) -> tuple[int, int, int]:
    """(uid, gid, pid) of the process at the other end of a plain unix socket (theater.stream)."""
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return uid, gid, pid

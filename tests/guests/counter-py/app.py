"""A counter actor in Python, built by componentize-py against ``theater:simple/message-actor``.

State is JSON, ``{"count": N}``. Every send or request adds one; a request is answered
with the new count in ASCII decimal (the same replies as examples/counter, so tests can
compare). Each call logs one line through ``runtime.log``. Built once per test session by
tests/toolchains.py, with and without ``--stub-wasi``.

A request ``O<N> <actor>`` also makes the counter a sender, as tests/actors/probe.wat's
``O``: N one-way sends to ``actor``, message i being ``b"e"`` and i as u32 little-endian,
then one request ``b"e"`` to it, whose reply is the answer (so everything sent has been
taken). A failed send fails the call with the host's reason.
"""

import json
import struct

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import message_server_host, runtime, types


def _count(state: bytes | None) -> int:
    if state is None:
        return 0
    try:
        return int(json.loads(state)["count"])
    except (ValueError, KeyError, TypeError) as e:
        raise Err(f"counter state is not {{\"count\": N}}: {e}") from None


def _state(count: int) -> bytes:
    return json.dumps({"count": count}).encode()


def _send_numbered(command: bytes) -> bytes:
    """``O<N> <actor>``: N numbered one-way sends, then one request; its reply."""
    try:
        n, actor = command[1:].decode().split(" ", 1)
        count = int(n)
    except ValueError:
        raise Err(f"expected O<N> <actor>, got {command[:60]!r}") from None
    for i in range(count):
        message_server_host.send(actor, b"e" + struct.pack("<I", i))
    return message_server_host.request(actor, b"e")


class Actor(exports.Actor):
    def init(self, state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
        count = _count(state)
        runtime.log(f"counter {params[0]} started at {count}")
        return (_state(count),)


class MessageServerClient(exports.MessageServerClient):
    def handle_send(self, state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
        count = _count(state) + 1
        runtime.log(f"send #{count}")
        return (_state(count),)

    def handle_request(self, state: bytes | None,
                       params: tuple[str, bytes]) -> tuple[bytes | None, tuple[bytes | None]]:
        count = _count(state) + 1
        runtime.log(f"request {params[0]} #{count}")
        if params[1].startswith(b"O"):
            return (_state(count), (_send_numbered(params[1]),))
        return (_state(count), (str(count).encode(),))

    def handle_channel_open(self, state: bytes | None,
                            params: tuple[str, bytes]) -> tuple[bytes | None, tuple[types.ChannelAccept]]:
        return (state, (types.ChannelAccept(accepted=False, message=None),))

    def handle_channel_message(self, state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
        return (state,)

    def handle_channel_close(self, state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
        return (state,)

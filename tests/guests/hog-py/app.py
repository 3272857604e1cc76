"""A Python actor that allocates until it cannot, built by componentize-py (tests of the memory limit).

A request "alloc" keeps 1 MiB blocks until CPython's allocator gets no more linear memory
(its ``memory.grow`` is refused at the actor's ``[limits] memory``); the MemoryError is not
caught, so the call traps, as a real actor that runs out of memory does. Any other request
is answered with the number of blocks kept. Built once per test session by tests/toolchains.py.
"""

from wit_world import exports
from wit_world.imports import types

_kept: list[bytes] = []


class Actor(exports.Actor):
    def init(self, state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
        return (state,)


class MessageServerClient(exports.MessageServerClient):
    def handle_send(self, state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
        return (state,)

    def handle_request(self, state: bytes | None,
                       params: tuple[str, bytes]) -> tuple[bytes | None, tuple[bytes | None]]:
        if params[1] == b"alloc":
            while True:
                _kept.append(bytes(1 << 20))
        return (state, (str(len(_kept)).encode(),))

    def handle_channel_open(self, state: bytes | None,
                            params: tuple[str, bytes]) -> tuple[bytes | None, tuple[types.ChannelAccept]]:
        return (state, (types.ChannelAccept(accepted=False, message=None),))

    def handle_channel_message(self, state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
        return (state,)

    def handle_channel_close(self, state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
        return (state,)

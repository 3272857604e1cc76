"""A counter actor in Python, built by componentize-py against ``theater:simple/message-actor``.

State is JSON, ``{"count": N}``. Every send or request adds one; a request is answered
with the new count in ASCII decimal (the same replies as examples/counter, so tests can
compare). Each call logs one line through ``runtime.log``. Built once per test session by
tests/toolchains.py, with and without ``--stub-wasi``.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import runtime, types


def _count(state: bytes | None) -> int:
    if state is None:
        return 0
    try:
        return int(json.loads(state)["count"])
    except (ValueError, KeyError, TypeError) as e:
        raise Err(f"counter state is not {{\"count\": N}}: {e}") from None


def _state(count: int) -> bytes:
    return json.dumps({"count": count}).encode()


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
        return (_state(count), (str(count).encode(),))

    def handle_channel_open(self, state: bytes | None,
                            params: tuple[str, bytes]) -> tuple[bytes | None, tuple[types.ChannelAccept]]:
        return (state, (types.ChannelAccept(accepted=False, message=None),))

    def handle_channel_message(self, state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
        return (state,)

    def handle_channel_close(self, state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
        return (state,)

"""A handler from outside the package, for the tests: ``echo`` grants ``test:echo/echo.shout``.

Loaded in every Theater process by ``THEATER_PLUGINS=tests.plugins.echo``: this module registers
the manifest's half (its interface, its WIT and its one key); the worker imports
``tests.plugins.echo_handler`` (named in the spec) for the host function.
"""

from __future__ import annotations

from theater import grants

WIT = """package test:echo;

interface echo {
    /// The message in capitals, followed by the handler's `suffix`.
    shout: func(msg: list<u8>) -> list<u8>;
}
"""


def _suffix(value: object) -> str:
    if not isinstance(value, str) or len(value) > 8:
        raise ValueError("expected a string of at most 8 characters")
    return value


grants.register(grants.Spec("echo", imports=("test:echo/echo",), keys={"suffix": _suffix}, wit=WIT,
                            worker="tests.plugins.echo_handler"))

"""A handler from outside the package works end to end through the plug-in interface alone.

``tests/plugins/echo.py`` registers the manifest's half of a test-only ``echo`` handler and
``tests/plugins/echo_handler.py`` its worker half; nothing in ``worker/`` names it. With
``THEATER_PLUGINS`` naming it, an actor granted ``echo`` calls its host function, the call is
recorded in its chain like any other, and the chain replays offline.
"""

from __future__ import annotations

import orjson
import pytest

from .conftest import ROOT, Server, cli_events

ECHO = ROOT / "tests" / "plugins" / "echo.toml"


@pytest.fixture
def plugin_server(home, monkeypatch):
    monkeypatch.setenv("THEATER_PLUGINS", "tests.plugins.echo")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    s = Server(home).start()
    try:
        yield s
    finally:
        s.stop()


def test_a_plugin_handler_is_granted_called_recorded_and_replayed(plugin_server):
    r = plugin_server.cli("start", str(ECHO), "--json")
    assert r.code == 0, r.err
    actor = orjson.loads(r.out)["id"]
    r = plugin_server.cli("message", actor, "hello", "--request")
    assert r.code == 0, r.err
    assert r.out == b"HELLO!"
    shouts = [e for e in cli_events(plugin_server, actor) if e["type"] == "test:echo/echo/shout"]
    assert len(shouts) == 1
    assert shouts[0]["body"] == {"input": [{"utf8": "hello"}], "output": {"utf8": "HELLO!"}}
    r = plugin_server.cli("replay", actor, "--json")
    assert r.code == 0, r.err + r.text
    assert orjson.loads(r.out)["ok"] is True


def test_without_the_plugin_the_handler_is_unknown(server):
    r = server.cli("start", str(ECHO))
    assert r.code == 2
    assert "type = 'echo': unknown handler type" in r.err and r.err.count("\n") == 1

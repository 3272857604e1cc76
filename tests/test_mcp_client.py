"""``mcp-client``: an actor (examples/mcp/relay.wat) calls the tools of a real MCP server written with
the SDK (examples/mcp/weather.py), through the gateway: the gateway starts a stdio server and owns it
(stopped with the actor), reaches an HTTP server the test started, refuses and records a tool
outside ``allowed_tools`` (the server never sees it), and the actor's replay matches with the
server gone. Also: bad grants get one line, and an actor cannot hand its children servers it
was not given. Finally the whole way round: an MCP client -> ``theater mcp`` -> the relay's
tool -> the weather server.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import orjson
import psutil
import pytest
from mcp import Client, StdioServerParameters

from .conftest import ACTORS, EXAMPLES, ROOT, Server, announced_url, cli_events, cmdline, kill_all, pid_alive, wait_for

pytestmark = pytest.mark.timeout(180)

RELAY = EXAMPLES / "mcp" / "relay.wat"
WEATHER = EXAMPLES / "mcp" / "weather.py"
PARENT = ACTORS / "parent.wat"


def relay_manifest(folder: Path, server: str, name: str = "relay", allowed: str = '["forecast"]') -> Path:
    """A relay manifest whose grant names ``server`` (TOML key lines) as "upstream"."""
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{RELAY}"\n'
                    '[[handler]]\ntype = "message-server"\n[[handler]]\ntype = "mcp-client"\n'
                    f'[handler.servers.upstream]\n{server}\nallowed_tools = {allowed}\n'
                    '[[mcp.tool]]\nname = "forecast"\ndescription = "the weather"\n'
                    'input_schema = { type = "object", properties = { city = { type = "string" } } }\n')
    return path


def stdio_server(log: Path) -> str:
    return f'command = "{sys.executable}"\nargs = ["{WEATHER}", "--log", "{log}"]'


def ask(client, actor: str, tool: str, **arguments) -> str:
    return client.request(actor, orjson.dumps({"tool": tool, "arguments": arguments})).decode()


def seen(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def weather_processes(server: Server) -> list[psutil.Process]:
    return [p for p in server.descendants() if str(WEATHER) in " ".join(cmdline(p))]


def replay(server: Server, actor: str) -> dict:
    r = server.cli("replay", actor, "--json")
    assert r.code == 0, r.err
    return orjson.loads(r.out)


class HttpWeather:
    """weather.py over streamable HTTP, started by the test on a free loopback port."""

    def __init__(self, log: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WEATHER), "--http", "127.0.0.1:0", "--log", str(log)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.url = announced_url(self.proc, "weather.py --http")

    def stop(self) -> None:
        kill_all({self.proc.pid})
        self.proc.wait()


@pytest.fixture
def http_weather(tmp_path) -> Iterator[HttpWeather]:
    w = HttpWeather(tmp_path / "http.log")
    yield w
    w.stop()


def test_a_stdio_server_is_the_gateways_and_a_refused_tool_never_reaches_it(server, tmp_path):
    log = tmp_path / "calls.log"
    with server.client() as c:
        actor = c.start(relay_manifest(tmp_path, stdio_server(log)))["id"]
        assert weather_processes(server) == []                 # started at the first use
        assert json.loads(ask(c, actor, "tools")) == ["forecast"]    # listed as the grant allows
        content = json.loads(ask(c, actor, "forecast", city="Paris"))
        assert content[0]["type"] == "text" and content[0]["text"].startswith("Paris: ")
        refused = ask(c, actor, "alerts", city="Paris")
        assert refused.startswith("error: permission denied") and "allowed_tools" in refused
        failed = ask(c, actor, "forecast", city=" ")           # the tool's own failure: isError
        assert failed.startswith("error: ")
        (weather,) = weather_processes(server)
        gateway = weather.parent()
        assert "supervisor.gateway" in " ".join(gateway.cmdline())     # the gateway's, not the worker's
        assert [s["arguments"]["city"] for s in seen(log)] == ["Paris", " "]   # alerts never got there
        events = cli_events(server, actor)
        calls = [e for e in events if e["type"] == "theater:simple/mcp-client/call-tool"]
        assert [e["body"]["input"][1] for e in calls] == ["forecast", "alerts", "forecast"]
        assert json.loads(calls[0]["body"]["output"]["ok"]["content"]) == content
        assert calls[2]["body"]["output"]["ok"]["is-error"] is True
        assert "err" in calls[1]["body"]["output"]
        (denied,) = [e for e in events if e["type"] == "mcp-client/permission-denied"]
        assert denied["body"]["tool"] == "alerts" and denied["body"]["server"] == "upstream"
        c.stop(actor)
    # the server stopped with the actor's grant; the replay needs none
    wait_for(lambda: not pid_alive(weather.pid), timeout=30, what="the stdio server to stop with its actor")
    report = replay(server, actor)
    assert report["ok"] and report["calls"] == 5, report      # init and four requests


def test_an_http_server_started_by_the_test_and_the_replay_after_it_is_gone(server, http_weather, tmp_path):
    with server.client() as c:
        actor = c.start(relay_manifest(tmp_path, f'url = "{http_weather.url}"', allowed='["*"]'))["id"]
        assert sorted(json.loads(ask(c, actor, "tools"))) == ["alerts", "forecast"]
        content = json.loads(ask(c, actor, "alerts", city="Oslo"))
        assert content == [{"type": "text", "text": "Oslo: no alerts"}]
    http_weather.stop()
    report = replay(server, actor)
    assert report["ok"] and report["calls"] == 3, report      # init and two requests


def test_a_url_is_held_to_http_clients_address_rules(server, http_weather, tmp_path):
    """The URL's host is its own allow-list entry: "localhost" may reach loopback, another name that
    resolves there may not (the gateway checks every address before it connects, and pins it)."""
    port = http_weather.url.split(":")[2].split("/")[0]
    name = socket.gethostname()
    if any(ipaddress.ip_address(a[4][0]).is_global for a in socket.getaddrinfo(name, None)):
        pytest.skip(f"this machine's name {name} resolves to a public address")
    log = tmp_path / "http.log"
    with server.client() as c:
        actor = c.start(relay_manifest(tmp_path, f'url = "http://localhost:{port}/mcp"'))["id"]
        content = json.loads(ask(c, actor, "forecast", city="Rome"))
        assert content[0]["text"].startswith("Rome: ")
        other = c.start(relay_manifest(tmp_path, f'url = "http://{name}:{port}/mcp"', name="other"))["id"]
        refused = ask(c, other, "forecast", city="Bern")
        assert refused.startswith("error: permission denied") and "not a public address" in refused, refused
    assert [s["arguments"]["city"] for s in seen(log)] == ["Rome"]
    (denied,) = [e for e in cli_events(server, other) if e["type"] == "mcp-client/permission-denied"]
    assert "not a public address" in denied["body"]["reason"]


@pytest.mark.parametrize(("server_keys", "says"), [
    ('args = ["x"]', "give either command"),
    ('command = "x"\nurl = "http://a.example/mcp"', "give either command"),
    ('url = "ftp://a.example/mcp"', "expected an http:// or https:// URL"),
    ('url = "http://user:pw@a.example/mcp"', "no credentials in the URL"),
    ('command = "x"\nheaders = { a = "b" }', "headers: only for a url server"),
    ('command = "x"\ntimeout = "1h"', "at most \\\"10m\\\""),
    ('command = "x"\nenv = { A = "${secret:no such}" }', "a secret name is letters"),
])
def test_bad_grants_get_one_line(server, tmp_path, server_keys, says):
    r = server.cli("start", str(relay_manifest(tmp_path, server_keys)))
    assert r.code == 2 and says.replace("\\", "") in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err


def test_a_missing_allowed_tools_list_and_an_undefined_secret_are_refused(server, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(relay_manifest(tmp_path, 'command = "x"').read_text().replace('allowed_tools = ["forecast"]\n',
                                                                                  ""))
    r = server.cli("start", str(path))
    assert r.code == 2 and "allowed_tools: required" in r.err, r.err
    r = server.cli("start", str(relay_manifest(tmp_path, 'url = "http://127.0.0.1:9/mcp"\n'
                                                          'headers = { authorization = "${secret:NOPE}" }')))
    assert r.code == 2 and "secret 'NOPE' is not defined" in r.err, r.err


def test_an_actor_cannot_hand_a_child_servers_it_was_not_given(server, tmp_path):
    log = tmp_path / "calls.log"
    child = relay_manifest(tmp_path, stdio_server(log), name="child")
    parent = tmp_path / "parent.toml"
    parent.write_text((ACTORS / "parent.toml").read_text().replace('component = "parent.wat"',
                                                                   f'component = "{PARENT}"'))
    with server.client() as c:
        p = c.start(parent)["id"]
        reply = c.request(p, b"S" + child.name.encode()).decode()
        assert reply.startswith("error: ") and "its parent has no mcp-client grant" in reply, reply
    assert weather_processes(server) == [] and not log.exists()


def test_the_whole_way_round_an_mcp_client_calls_an_actor_that_calls_an_mcp_server(server, tmp_path):
    log = tmp_path / "calls.log"
    manifest = relay_manifest(tmp_path, stdio_server(log))

    async def body():
        params = StdioServerParameters(command=sys.executable, cwd=str(ROOT),
                                       args=["-m", "theater", "--home", str(server.home.root), "mcp"])
        with anyio.fail_after(120):
            async with Client(params) as c:
                r = await c.call_tool("theater_start", {"manifest": str(manifest)})
                assert not r.is_error, r.content[0].text
                r = await c.call_tool("relay.forecast", {"city": "Lima"})
                assert not r.is_error and json.loads(r.content[0].text)[0]["text"].startswith("Lima: ")
    anyio.run(body)
    assert [s["arguments"] for s in seen(log)] == [{"city": "Lima"}]

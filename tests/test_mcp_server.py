"""``theater mcp``, driven by the MCP SDK's own client over stdio and streamable HTTP, against a real
theater-server: management and actor tools, calls that reach the actor (and its chain), tool
errors for bad arguments and failing actors, MCP errors for unknown tools and oversized
arguments, malformed JSON-RPC, and the list-changed notice as actors start and stop, for
both protocol eras (2026-07-28 ``subscriptions/listen`` and the handshake era's notification).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import anyio
import httpx
import orjson
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from theater.mcp_catalog import actor_tools
from theater.mcp_server import schema_problem

from .conftest import ACTORS, ROOT, Server, announced_url, cli_events, cli_start, kill_all, run_cli

pytestmark = pytest.mark.timeout(180)

TOOLS = ACTORS / "tools.toml"
MANAGEMENT = {"theater_list", "theater_inspect", "theater_events", "theater_verify", "theater_tree"}
GENEROUS = 60


def stdio(server: Server, *flags: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, cwd=str(ROOT),
                                 args=["-m", "theater", "--home", str(server.home.root), "mcp", *flags])


def run(fn, *args):
    """Runs an async test body to its end, within a generous bound."""
    async def bounded():
        with anyio.fail_after(GENEROUS * 2):
            await fn(*args)
    anyio.run(bounded)


async def names(c: Client) -> set[str]:
    return {t.name for t in (await c.list_tools(cache_mode="refresh")).tools}


def text(result) -> str:
    return result.content[0].text


class HttpMcp:
    """`theater mcp --http 127.0.0.1:0`: the URL it prints once it listens."""

    def __init__(self, server: Server, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "theater", "--home", str(server.home.root), "mcp", "--http", "127.0.0.1:0", *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, text=True)
        self.url = announced_url(self.proc, "theater mcp --http")

    def stop(self) -> None:
        kill_all({self.proc.pid})
        self.proc.wait()


@pytest.fixture
def http_mcp(server) -> Iterator[HttpMcp]:
    h = HttpMcp(server)
    yield h
    h.stop()


def test_stdio_lists_calls_and_follows_actors(server):
    actor = cli_start(server, TOOLS)

    async def body():
        async with Client(stdio(server)) as c:
            assert c.protocol_version == "2026-07-28"
            assert c.server_capabilities.tools.list_changed
            listed = await names(c)
            assert MANAGEMENT | {"theater_start", "theater_stop", "tools.echo", "tools.refuse", "tools.trap"} <= listed
            # an actor tool: an ordinary request, {"tool", "arguments"} in, the reply's bytes out
            r = await c.call_tool("tools.echo", {"text": "héllo", "n": 2})
            assert not r.is_error and orjson.loads(text(r)) == {"tool": "echo", "arguments": {"text": "héllo", "n": 2}}
            # bad arguments never reach the actor: a tool error naming what is wrong
            r = await c.call_tool("tools.echo", {"text": 5})
            assert r.is_error and "arguments/text" in text(r)
            r = await c.call_tool("tools.echo", {"n": -1, "text": "x"})
            assert r.is_error and "arguments/n" in text(r)
            # a failing actor: a tool error, and the server keeps serving
            # (an Err from an export is an actor failure: it is restarted, like after a trap)
            r = await c.call_tool("tools.refuse", {})
            assert r.is_error and "stopped (error)" in text(r)
            await wait_for_async(lambda: c.call_tool("tools.echo", {"text": "back"}), lambda r: not r.is_error)
            r = await c.call_tool("tools.trap", {})
            assert r.is_error and "stopped (trap)" in text(r)
            r = await c.call_tool("theater_inspect", {"actor": actor})
            assert not r.is_error and json.loads(text(r))["id"] == actor
            await wait_for_async(lambda: c.call_tool("tools.echo", {"text": "again"}), lambda r: not r.is_error)
            # the list follows the actors: stopping it takes its tools away, with a notice
            async with c.listen(tools_list_changed=True) as sub:
                r = await c.call_tool("theater_stop", {"actor": actor})
                assert not r.is_error
                with anyio.fail_after(GENEROUS):
                    async for _ in sub:
                        if not any(n.startswith("tools.") for n in await names(c)):
                            break
            assert await names(c) == MANAGEMENT | {"theater_start", "theater_stop"}
    run(body)
    # the calls that reached the actor are in its chain, like any request
    wasm = [e for e in cli_events(server, actor) if e["type"] == "wasm"]
    assert any("echo" in json.dumps(e["body"]) for e in wasm)


async def wait_for_async(call, ok, tries: int = 200):
    for _ in range(tries):
        result = await call()
        if ok(result):
            return result
        await anyio.sleep(0.1)
    raise AssertionError("condition not reached")


def test_handshake_era_client_is_told_when_the_list_changes(server):
    async def body():
        notices = []

        async def handler(msg):
            if getattr(msg, "method", "") == "notifications/tools/list_changed":
                notices.append(msg)
        async with Client(stdio(server), mode="legacy", message_handler=handler) as c:
            assert c.protocol_version != "2026-07-28"
            assert not any(n.startswith("tools.") for n in await names(c))
            r = await c.call_tool("theater_start", {"manifest": str(TOOLS)})
            assert not r.is_error, text(r)
            actor = json.loads(text(r))["id"]
            with anyio.fail_after(GENEROUS):
                while not notices:
                    await anyio.sleep(0.05)
            assert "tools.echo" in await names(c)
            r = await c.call_tool("tools.echo", {"text": "legacy"})
            assert orjson.loads(text(r))["arguments"] == {"text": "legacy"}
            seen = len(notices)
            assert run_cli(server.home, "stop", actor).code == 0
            with anyio.fail_after(GENEROUS):
                while len(notices) == seen:
                    await anyio.sleep(0.05)
            assert not any(n.startswith("tools.") for n in await names(c))
    run(body)


def test_unknown_tools_and_oversized_arguments_are_mcp_errors(server):
    cli_start(server, TOOLS)

    async def body():
        async with Client(stdio(server, "--read-only")) as c:
            listed = await names(c)
            assert "theater_start" not in listed and "theater_stop" not in listed
            for name in ("tools.nothing", "nobody.echo", "theater_start"):
                with pytest.raises(MCPError):
                    await c.call_tool(name, {})
            with pytest.raises(MCPError) as e:
                await c.call_tool("tools.echo", {"text": "x" * (1 << 20)})
            assert "limit" in str(e.value)
            # nothing else was disturbed
            r = await c.call_tool("tools.echo", {"text": "still here"})
            assert not r.is_error
    run(body)


def test_malformed_json_rpc_on_stdio_gets_an_error_and_the_session_goes_on(server):
    proc = subprocess.Popen([sys.executable, "-m", "theater", "--home", str(server.home.root), "mcp"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        def send(obj: bytes) -> dict:
            proc.stdin.write(obj + b"\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())
        bad = send(b'{"jsonrpc": "2.0", "id": 1, "method": ')
        assert bad["error"]["code"] == -32700
        bad = send(b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": 7}')
        assert "error" in bad
        init = send(orjson.dumps({"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        assert init["id"] == 3 and init["result"]["serverInfo"]["name"] == "theater"
        proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        listed = send(b'{"jsonrpc": "2.0", "id": 4, "method": "tools/list"}')
        assert {t["name"] for t in listed["result"]["tools"]} >= MANAGEMENT
    finally:
        kill_all({proc.pid})
        proc.wait()


def test_http_serves_the_same_tools_read_only_by_default(server, http_mcp):
    actor = cli_start(server, TOOLS)

    async def body():
        async with Client(http_mcp.url) as c:
            listed = await names(c)
            assert MANAGEMENT | {"tools.echo"} <= listed
            assert "theater_start" not in listed and "theater_stop" not in listed
            r = await c.call_tool("tools.echo", {"text": "over http"})
            assert orjson.loads(text(r))["arguments"] == {"text": "over http"}
            r = await c.call_tool("tools.refuse", {})
            assert r.is_error
            async with c.listen(tools_list_changed=True) as sub:
                assert run_cli(server.home, "stop", actor).code == 0
                with anyio.fail_after(GENEROUS):
                    async for _ in sub:
                        if "tools.echo" not in await names(c):
                            break
    run(body)


def test_malformed_json_rpc_over_http_is_refused_and_the_server_goes_on(server, http_mcp):
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    with httpx.Client(timeout=GENEROUS) as h:
        r = h.post(http_mcp.url, content=b'{"jsonrpc": "2.0", "id": 1, "method": ', headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == -32700
        r = h.post(http_mcp.url, content=b"x" * (2 << 20), headers=headers)     # over theater mcp's own cap
        assert r.status_code == 413

    async def body():
        async with Client(http_mcp.url) as c:
            assert await names(c) >= MANAGEMENT
    run(body)


@pytest.mark.parametrize(("flags", "says"), [
    (["--http", "nonsense"], "expected [HOST:]PORT"),
    (["--http", "10.1.2.3:8080"], "not a loopback address"),
])
def test_bad_command_lines_get_one_line(home, flags, says):
    r = run_cli(home, "mcp", *flags)
    assert r.code == 2 and says in r.err and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err


def test_without_a_server_tools_say_so(home):
    async def body():
        params = StdioServerParameters(command=sys.executable, cwd=str(ROOT), env={**os.environ},
                                       args=["-m", "theater", "--home", str(home.root), "mcp"])
        async with Client(params) as c:
            r = await c.call_tool("theater_list", {})
            assert r.is_error and "no theater server is running" in text(r)
    run(body)


def test_no_actor_takes_another_actors_tool_names():
    """Red-team finding: two actors named "tools" became tools-<id8>.echo each, and a third
    actor named "tools-a68c4f41" then overwrote the first one's entry: a call meant for it
    went to the impostor."""
    echo = [{"name": "echo", "description": "d", "input_schema": {"type": "object"}}]
    victim, twin, thief = ("a68c4f41-0000-4000-8000-000000000001", "5971b108-0000-4000-8000-000000000002",
                           "3601620f-0000-4000-8000-000000000003")
    tools = actor_tools([{"id": victim, "name": "tools", "tools": echo}, {"id": twin, "name": "tools", "tools": echo},
                         {"id": thief, "name": "tools-a68c4f41", "tools": echo}])
    assert sorted(t.actor_id for t in tools.values()) == sorted([victim, twin, thief])      # none lost
    assert all(t.actor_id != thief for name, t in tools.items() if name.startswith("tools-a68c4f41."))
    assert actor_tools([{"id": victim, "name": "solo", "tools": echo}]).keys() == {"solo.echo"}
    thief2 = "77777777-0000-4000-8000-000000000004"              # review finding: named with the whole id
    tools = actor_tools([{"id": victim, "name": "tools", "tools": echo}, {"id": twin, "name": "tools", "tools": echo},
                         {"id": thief, "name": "tools-a68c4f41", "tools": echo},
                         {"id": thief2, "name": f"tools-{victim}", "tools": echo}])
    assert sorted(t.actor_id for t in tools.values()) == sorted([victim, twin, thief, thief2])     # none lost


def test_a_schema_with_a_regular_expression_is_not_evaluated():
    """Red-team finding: an actor's `pattern = "^(a+)+$"` took the MCP server 12 s (doubling with
    each character) on one argument, blocking every client. New manifests may not have one
    (theater.admission); a saved actor's tool call is refused without matching it."""
    evil = {"type": "string", "pattern": "^(a+)+$"}
    for schema, where in (
        ({"type": "object", "properties": {"s": evil}}, "input_schema.properties.s.pattern"),
        ({"type": "object", "properties": {"s": {"$ref": "#/x"}}, "x": evil}, "input_schema.properties.s.$ref"),
        ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",          # review finding:
          "dependencies": {"s": {"properties": {"s": evil}}}}, "input_schema.$schema"),     # a draft's own keyword
    ):
        assert schema_problem(schema, {"s": "a" * 40 + "!"}) == (
            f"the tool's {where} is not evaluated by theater mcp (no regular expression, reference or other "
            f"draft than 2020-12)"), schema
    assert schema_problem({"type": "object", "properties": {"pattern": {"type": "string"}}}, {"pattern": "x"}) is None

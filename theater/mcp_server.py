"""``theater mcp``: this home's actors as MCP tools, for any MCP client, over stdio or streamable HTTP.

Built on the official SDK's low-level ``Server`` (the optional extra ``theater[mcp]``) as a
client of the running theater-server, like the CLI (``theater.client``; blocking calls run
on threads, one pooled connection each). What it offers is ``theater.mcp_catalog``. A tool
call is an ordinary request: an actor tool's call reaches the actor as
``mcptools.request_message`` (its chain records it; its limits and supervision apply), and
the reply's bytes are the tool's text. Arguments are checked against the tool's schema
first. A failing actor, bad arguments or an unreachable server give a tool result with
``isError``; an unknown tool or arguments over ``MAX_ARGUMENTS`` an MCP (JSON-RPC) error.

The tool list changes as actors come and go. The server pushes ``actors_changed`` to a
``watch`` subscription on the management socket, so a change is seen at once and costs
nothing while nothing changes (polling ``list`` would cost a request per second per client
and still lag); the subscription is checked every ``CHECK_INTERVAL`` with a ``ping``, and
renewed when the server restarted (a new pid). When the tools differ, MCP's list-changed
notification goes out: on ``subscriptions/listen`` streams (2026-07-28 clients) and on
every handshake-era connection (earlier protocol versions).
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import jsonschema
import mcp_types as types
import orjson
from mcp.server.caching import CacheHint
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError

from . import __version__, mcp_catalog, mcptools
from .client import Client
from .errors import TheaterError
from .paths import Home

log = logging.getLogger("theater.mcp")

# A call's arguments, as JSON, may not be larger than this (an MCP error, before anything is sent).
MAX_ARGUMENTS = 1 << 20
# How often the watch subscription is checked against the server's pid (and renewed after a
# restart of the server), and how long to wait before trying again when there is no server.
CHECK_INTERVAL = 5.0
RETRY_INTERVAL = 1.0
IDLE_CLIENTS = 8

T = TypeVar("T")


class Pool:
    """Connections to the server for blocking calls made on threads, one per call in flight."""

    def __init__(self, home: Home, server: str | None, timeout: float) -> None:
        self.home, self.server, self.timeout = home, server, timeout
        self.idle: list[Client] = []

    def new(self) -> Client:
        return Client(self.home, self.server, self.timeout)

    def _run(self, fn: Callable[[Client], T]) -> T:
        c = self.idle.pop() if self.idle else self.new()
        try:
            out = fn(c)
        except BaseException:
            c.close()          # its socket may still get the answer it gave up on
            raise
        if len(self.idle) < IDLE_CLIENTS:
            self.idle.append(c)
        else:
            c.close()
        return out

    async def __call__(self, fn: Callable[[Client], T]) -> T:
        return await anyio.to_thread.run_sync(self._run, fn, abandon_on_cancel=True)


def _text(text: str, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


class NotEvaluated(Exception):
    """A tool's schema holds what theater mcp does not evaluate (``mcptools.unsafe_keyword``)."""


@lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> jsonschema.protocols.Validator:
    """The schema's validator, made once; NotEvaluated if it asks for what is not evaluated."""
    schema = orjson.loads(schema_json)
    if (where := mcptools.unsafe_keyword(schema)) is not None:
        raise NotEvaluated(where)
    cls = jsonschema.Draft202012Validator           # the only draft a tool's schema may use (mcptools)
    cls.check_schema(schema)
    return cls(schema)


def schema_problem(schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """Why ``arguments`` do not match ``schema``, in one line, or None. A schema asking for what
    is not evaluated (``mcptools.unsafe_keyword``: an actor saved before such schemas were
    refused) refuses the call."""
    try:
        validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    except NotEvaluated as e:
        return (f"the tool's {e} is not evaluated by theater mcp (no regular expression, reference or other "
                f"draft than 2020-12)")
    except jsonschema.SchemaError as e:
        return f"the tool's input_schema is not a valid JSON Schema: {e.message}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"arguments{'/' + where if where else ''}: {error.message}"


class Bridge:
    """The MCP server's handlers, the tool catalog they serve, and its list-changed notices."""

    def __init__(self, pool: Pool, read_only: bool) -> None:
        self.pool = pool
        self.management = {m.name: m for m in mcp_catalog.MANAGEMENT if not (read_only and m.changes)}
        self.disabled = {m.name for m in mcp_catalog.MANAGEMENT} - set(self.management)
        self.actors: dict[str, mcp_catalog.ActorTool] = {}
        self.bus = InMemorySubscriptionBus()
        self.legacy: set[Any] = set()          # handshake-era connections, told of changes directly
        self.server: Server[Any] = Server(
            "theater", version=__version__, on_list_tools=self.list_tools, on_call_tool=self.call_tool,
            on_subscriptions_listen=ListenHandler(self.bus),
            instructions="Tools of the actors on a Theater server (named <actor>.<tool>) and tools to manage "
                         "them (theater_*). Every call into an actor is recorded in its signed event chain.",
            # the list changes whenever an actor starts or stops: never serve it from a cache
            cache_hints={"tools/list": CacheHint(ttl_ms=0)})
        self.server.middleware.append(self._note_connection)

    def init_options(self) -> Any:
        return self.server.create_initialization_options(NotificationOptions(tools_changed=True))

    # ---- the tools ----------------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Lists the actors' tools again; True if the list changed."""
        try:
            actors = await self.pool(lambda c: c.tools())
        except TheaterError as e:
            log.debug("cannot list actors' tools: %s", e.message)
            actors = []
        new = mcp_catalog.actor_tools(actors)
        changed = new != self.actors
        self.actors = new
        return changed

    async def list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        await self.refresh()
        tools = [types.Tool(name=m.name, description=m.description, input_schema=m.input_schema)
                 for m in self.management.values()]
        tools += [types.Tool(name=name, title=f"{t.actor_name}: {t.tool.name}", description=t.tool.description,
                             input_schema=t.tool.input_schema) for name, t in self.actors.items()]
        return types.ListToolsResult(tools=tools)

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        name, arguments = params.name, params.arguments or {}
        size = len(orjson.dumps(arguments))
        if size > MAX_ARGUMENTS:
            raise MCPError(types.INVALID_PARAMS, f"{name}: arguments of {size} bytes are over the "
                                                 f"{MAX_ARGUMENTS}-byte limit")
        if name in self.management:
            return await self._manage(self.management[name], arguments)
        if name in self.disabled:
            raise MCPError(types.INVALID_PARAMS, f"{name} is disabled on this server (read-only; over HTTP, "
                                                 "start `theater mcp` with --manage to allow it)")
        if name not in self.actors and await self.refresh():
            await self.notify()
        tool = self.actors.get(name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {name!r} (no running actor offers it)")
        problem = schema_problem(tool.tool.input_schema, arguments)
        if problem is not None:
            return _text(f"{name}: {problem}", error=True)
        message = mcptools.request_message(tool.tool.name, arguments)
        try:
            reply = await self.pool(lambda c: c.request(tool.actor_id, message))
        except TheaterError as e:
            return _text(f"{name}: actor {tool.actor_name} ({tool.actor_id[:8]}): {e.message}", error=True)
        return _text(reply.decode("utf-8", errors="replace"))

    async def _manage(self, m: mcp_catalog.Management, arguments: dict[str, Any]) -> types.CallToolResult:
        problem = schema_problem(m.input_schema, arguments)
        if problem is not None:
            return _text(f"{m.name}: {problem}", error=True)
        try:
            value = await self.pool(lambda c: m.run(c, arguments))
        except TheaterError as e:
            return _text(f"{m.name}: {e.message}", error=True)
        return _text(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())

    # ---- list changes -------------------------------------------------------------------------

    async def _note_connection(self, ctx: Any, call_next: Any) -> Any:
        """Remembers each handshake-era connection: list changes are sent to it on its own channel."""
        if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
            # the connection behind this request's session (the SDK has no public name for it)
            conn = getattr(ctx.session, "_connection", None)
            if conn is not None and conn not in self.legacy:
                self.legacy.add(conn)
                conn.exit_stack.callback(self.legacy.discard, conn)
        return await call_next(ctx)

    async def notify(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for conn in list(self.legacy):
            try:
                await conn.send_tool_list_changed()
            except Exception as e:        # a connection that went away: forget it
                log.debug("list-changed not delivered: %s", e)
                self.legacy.discard(conn)

    async def follow(self) -> None:
        """Watches actors come and go (see the module's docstring); runs until cancelled."""
        while True:
            try:
                await self._watch()
            except TheaterError as e:
                log.debug("watch: %s", e.message)
            if await self.refresh():           # the server went away (or came back): tools changed
                await self.notify()
            await anyio.sleep(RETRY_INTERVAL)

    async def _watch(self) -> None:
        c = await anyio.to_thread.run_sync(self.pool.new)
        try:
            def subscribe() -> int:
                c.watch()
                return c.ping()["pid"]
            pid = await anyio.to_thread.run_sync(subscribe)
            if await self.refresh():
                await self.notify()
            while True:
                push = await anyio.to_thread.run_sync(c.next_push, CHECK_INTERVAL, abandon_on_cancel=True)
                if push is None:
                    if (await anyio.to_thread.run_sync(c.ping))["pid"] != pid:
                        return                  # a new server: subscribe again
                    continue
                while await anyio.to_thread.run_sync(c.next_push, 0):
                    pass                        # a burst of changes: list once
                if await self.refresh():
                    await self.notify()
        finally:
            c.close()


# ---- transports ---------------------------------------------------------------------------------

async def serve_stdio(bridge: Bridge) -> None:
    """MCP over this process's stdin and stdout. A line that is not a JSON-RPC message gets a
    JSON-RPC error (id null), which the SDK's stdio transport would drop without a word."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(bridge.follow)
        async with stdio_server() as (read, write):
            sieved_send, sieved = anyio.create_memory_object_stream[Any](0)

            async def sieve() -> None:
                async with sieved_send:
                    async for item in read:
                        if isinstance(item, Exception):
                            await write.send(SessionMessage(_malformed(item)))
                        else:
                            await sieved_send.send(item)
            tg.start_soon(sieve)
            await bridge.server.run(sieved, write, bridge.init_options())
        tg.cancel_scope.cancel()


def _malformed(exc: Exception) -> types.JSONRPCError:
    invalid_json = isinstance(exc, ValidationError) and any(e["type"] == "json_invalid" for e in exc.errors())
    code, what = (types.PARSE_ERROR, "not JSON") if invalid_json else (types.INVALID_REQUEST,
                                                                      "not a JSON-RPC 2.0 message")
    return types.JSONRPCError(jsonrpc="2.0", id=None, error=types.ErrorData(code=code, message=f"{what}: {exc}"[:500]))


async def serve_http(bridge: Bridge, host: str, port: int) -> None:
    """Streamable HTTP at http://HOST:PORT/mcp; says where on stderr once it listens (port 0: any free one)."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    bound = sock.getsockname()[1]
    app = bridge.server.streamable_http_app(host=host, max_request_body_size=MAX_ARGUMENTS + (64 << 10))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    shown = f"[{host}]" if ":" in host else host
    async with anyio.create_task_group() as tg:
        tg.start_soon(bridge.follow)

        async def announce() -> None:
            while not server.started:
                await anyio.sleep(0.01)
            print(f"theater mcp: listening on http://{shown}:{bound}/mcp", file=sys.stderr, flush=True)
        tg.start_soon(announce)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()

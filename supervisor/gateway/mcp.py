"""``mcp-client`` sessions, run by the gateway for actors: one per (actor process, server).

The MCP SDK is asynchronous; its sessions live on one asyncio loop in a thread of their
own, and each answer goes back to the gateway's loop through ``deliver`` (any thread).
A session starts at its actor's first call to that server: a stdio server is a process the
gateway starts (``get_default_environment`` plus the grant's ``env``, secrets placed here),
a URL server a streamable HTTP connection whose every request goes to an address checked
against ``http-client``'s rules (``theater.egress``) and pinned (no DNS rebinding; the name
still goes in ``Host`` and TLS SNI). Sessions end with the grant (``revoke``: the actor's
process exited) or the gateway; a session that broke is started again at the next call.

Checked before anything is sent: the server is in the grant, the tool in its
``allowed_tools`` (else ``denied``), the arguments a JSON object. Secret values that come
back in a result are masked as ``${secret:NAME}``; a result over ``MAX_RESULT`` is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import orjson

from theater import mcpgrant, protocol
from theater.errors import ManifestError
from theater.secrets import Secrets

from .egress import Denied as EgressDenied
from .egress import Failed as EgressFailed
from .egress import _checked_address, _mask

log = logging.getLogger("theater.gateway")

# A result (its content and structured content, as JSON) is recorded whole in the chain:
# bounded like an HTTP response body by default.
MAX_RESULT = 1 << 20
# Tools a list-tools answer may hold (pages are followed until then).
MAX_TOOLS = 1000
# How long closing a session may take (a stdio server gets its stdin closed, then signals).
CLOSE_TIMEOUT = 5.0

Reply = list[bytes]


class Denied(Exception):
    """Outside the grant: nothing was sent."""


@dataclass
class McpGrant:
    servers: dict[str, dict[str, Any]]
    base: str

    @classmethod
    def of(cls, config: dict[str, Any]) -> McpGrant:
        return cls(dict(config.get("servers") or {}), str(config.get("base") or "/"))


class _Session:
    """One MCP client session; its task owns the SDK client from open to close (anyio's scopes
    must end in the task that began them)."""

    def __init__(self, transport: Any, used: dict[str, str]) -> None:
        self.transport = transport
        self.used = used                   # secret values placed: masked in what comes back
        self.client: Any = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        from mcp import Client
        try:
            async with Client(self.transport, cache=None) as client:
                self.client = client
                self.ready.set()
                await self.stop.wait()
        except Exception as e:             # a server that cannot start, or that went away
            self.error = e
        finally:
            self.client = None
            self.ready.set()


class Sessions:
    def __init__(self, secrets: Secrets, deliver: Callable[[int, bytes, Reply], None]) -> None:
        self.secrets = secrets
        self.deliver = deliver
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sessions: dict[tuple[int, str], _Session] = {}

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self.loop.run_forever, name="mcp", daemon=True).start()
        return self.loop

    # ---- from the gateway's loop --------------------------------------------------------------

    def request(self, pid: int, ident: bytes, grant: McpGrant, header: dict[str, Any], data: list[bytes],
                timeout: float | None) -> Reply | None:
        """Checks a request against the grant; answers at once (a refusal, bad input), or later
        through ``deliver`` (None)."""
        rid, op, name = header["id"], header["op"], header["server"]
        tool = header.get("tool")
        spec = grant.servers.get(name)
        if spec is None:
            return _denied(rid, f"server {name!r} is not in this actor's mcp-client grant")
        if op == "call":
            allowed = spec["allowed_tools"]
            if not isinstance(tool, str) or ("*" not in allowed and tool not in allowed):
                return _denied(rid, f"tool {tool!r} of server {name!r} is not in allowed_tools "
                                    f"({', '.join(allowed) or 'none'})")
            try:
                arguments = orjson.loads(data[0]) if data else None
            except orjson.JSONDecodeError:
                arguments = None
            if not isinstance(arguments, dict):
                return _err(rid, "arguments: expected a JSON object")
        elif op == "list":
            arguments = None
        else:
            return _err(rid, f"mcp: unknown op {op!r}")
        limit = min(spec["timeout"], timeout) if timeout else spec["timeout"]
        work = self._run(pid, grant, name, spec, op, tool, arguments, limit)
        future = asyncio.run_coroutine_threadsafe(work, self._loop())
        future.add_done_callback(lambda f: self.deliver(pid, ident, _reply(rid, f)))
        return None

    def revoke(self, pid: int) -> None:
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(self._close(lambda key: key[0] == pid), self.loop)

    def close(self) -> None:
        """Ends every session (stdio servers stop), within CLOSE_TIMEOUT, and the loop."""
        if self.loop is None:
            return
        done = asyncio.run_coroutine_threadsafe(self._close(lambda key: True), self.loop)
        with contextlib.suppress(Exception):
            done.result(CLOSE_TIMEOUT + 1)
        self.loop.call_soon_threadsafe(self.loop.stop)

    # ---- on the sessions' loop ----------------------------------------------------------------

    async def _close(self, which: Callable[[tuple[int, str]], bool]) -> None:
        """Ends the sessions ``which`` picks (on this loop: the sessions are this loop's alone)."""
        sessions = [self.sessions.pop(k) for k in list(self.sessions) if which(k)]
        for s in sessions:
            s.stop.set()
        tasks = [s.task for s in sessions if s.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for t in pending:
                t.cancel()

    async def _session(self, pid: int, grant: McpGrant, name: str, spec: dict[str, Any]) -> _Session:
        key = (pid, name)
        s = self.sessions.get(key)
        if s is not None and s.ready.is_set() and s.client is None:
            await self._close(lambda k: k == key)      # it broke: start it again
            s = None
        if s is None:
            transport, used = self._transport(grant, spec)
            s = self.sessions[key] = _Session(transport, used)
            s.task = asyncio.get_running_loop().create_task(s.run())
        await s.ready.wait()
        if s.client is None:
            self.sessions.pop(key, None)
            leaf = _leaf(s.error) if s.error else None
            if getattr(leaf, "theater_denied", False):
                raise Denied(f"server {name!r}: {leaf}")
            why = f"{type(leaf).__name__}: {leaf}" if leaf else "it ended"
            raise Failed(_mask(f"server {name!r} could not be started or reached ({_first(why)})", s.used))
        return s

    def _transport(self, grant: McpGrant, spec: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        used: dict[str, str] = {}

        def render(template: str) -> str:
            try:
                value, names = self.secrets.render(template)
            except ManifestError as e:
                raise Failed(e.message) from None
            used.update(names)
            return value
        if "command" in spec:
            from mcp import StdioServerParameters
            run = mcpgrant.launch(spec, grant.base)
            return StdioServerParameters(command=run["command"], args=run["args"], cwd=run["cwd"],
                                         env={k: render(v) for k, v in run["env"].items()}), used
        from mcp.client.streamable_http import streamable_http_client
        headers = {k: render(v) for k, v in spec["headers"].items()}
        return streamable_http_client(spec["url"], http_client=_pinned_client(spec["url"], headers)), used

    async def _run(self, pid: int, grant: McpGrant, name: str, spec: dict[str, Any], op: str, tool: str | None,
                   arguments: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        s: _Session | None = None
        try:
            async with asyncio.timeout(timeout):
                s = await self._session(pid, grant, name, spec)
                if op == "list":
                    return {"value": await self._list(s, spec)}
                result = await s.client.call_tool(tool, arguments)
        except TimeoutError:
            raise Failed(f"server {name!r}: no answer within {timeout:.3g}s") from None
        except (Failed, Denied):
            raise
        except Exception as e:            # a protocol error, or the session broke: the actor's Err
            leaf = _leaf(e)
            if getattr(leaf, "theater_denied", False):
                raise Denied(f"server {name!r}: {leaf}") from None
            raise Failed(_mask(f"server {name!r}: {_first(f'{type(leaf).__name__}: {leaf}')}",
                               s.used if s else {})) from None
        content = _mask(orjson.dumps([c.model_dump(mode="json", by_alias=True, exclude_none=True)
                                      for c in result.content]).decode(), s.used)
        structured = None if result.structured_content is None else \
            _mask(orjson.dumps(result.structured_content).decode(), s.used)
        if len(content) + len(structured or "") > MAX_RESULT:
            raise Failed(f"server {name!r}: the result is over {MAX_RESULT} bytes")
        return {"value": {"content": content, "structured": structured, "is_error": bool(result.is_error)}}

    async def _list(self, s: _Session, spec: dict[str, Any]) -> list[dict[str, str]]:
        allowed, out, cursor = spec["allowed_tools"], [], None
        while len(out) < MAX_TOOLS:
            page = await s.client.list_tools(cursor=cursor, cache_mode="refresh")
            out += [{"name": t.name, "description": t.description or "",
                     "input_schema": _mask(orjson.dumps(t.input_schema).decode(), s.used)}
                    for t in page.tools if "*" in allowed or t.name in allowed]
            cursor = page.next_cursor
            if not cursor:
                break
        return out[:MAX_TOOLS]


class Failed(Exception):
    """Within the grant, but the call could not be made or its result read."""


def _pinned_client(url: str, headers: dict[str, str]) -> Any:
    """An HTTP client whose every request goes to an address of the URL's host that the allow-list
    rules admit, checked afresh at each request and connected to directly."""
    import httpx2

    pattern = mcpgrant.pattern(url)

    async def pin(request: Any) -> None:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            address = await asyncio.to_thread(_checked_address, pattern, host, port)
        except EgressDenied as e:        # outside the address rules: the actor's permission-denied
            refused = httpx2.ConnectError(str(e), request=request)
            refused.theater_denied = True        # type: ignore[attr-defined]
            raise refused from None
        except EgressFailed as e:
            raise httpx2.ConnectError(str(e), request=request) from None
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        request.url = request.url.copy_with(host=str(address))

    return httpx2.AsyncClient(headers=headers, trust_env=False, follow_redirects=False,
                              event_hooks={"request": [pin]}, timeout=httpx2.Timeout(30.0, read=300.0))


def _leaf(e: BaseException) -> BaseException:
    """The first exception at the bottom of the SDK's task groups: the one that says what happened."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return e


def _first(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else text


def _reply(rid: str, f: Future[dict[str, Any]]) -> Reply:
    try:
        return protocol.encode(protocol.ok(rid, **f.result()))
    except Denied as e:
        return _denied(rid, str(e))
    except Failed as e:
        return _err(rid, str(e))
    except Exception as e:
        log.exception("gateway: internal error in an MCP call")
        return _err(rid, f"internal error in the gateway: {type(e).__name__}")


def _denied(rid: str, why: str) -> Reply:
    return protocol.encode(protocol.ok(rid, denied=why))


def _err(rid: str, why: str) -> Reply:
    return protocol.encode(protocol.ok(rid, err=why))

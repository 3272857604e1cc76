"""``theater:simple/mcp-client``: MCP tools of the granted servers, reached through the gateway process.

The gateway runs the MCP client sessions (a stdio server is its process, started on first
use and stopped with this actor's grant) and checks every call against the grant: a server
it does not name or a tool outside ``allowed_tools`` comes back ``denied``, and the actor
gets ``Err`` and its chain an ``mcp-client/permission-denied`` event with what was asked.
Each call's event records its inputs and the whole result, so a replay needs no server.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..values import Err, Ok, errors_as_err, record
from .base import Functions, Handler, register

INTERFACE = "theater:simple/mcp-client"
DENIED = "mcp-client/permission-denied"
# The gateway is given the call's remaining time less this share, so that its answer (a
# timeout, at worst) comes back while the actor can still handle it.
TIME_SHARE = 0.9


@register
class McpClient(Handler):
    type = "mcp-client"

    def functions(self) -> Functions:
        host = self.host

        def ask(op: str, server: str, tool: str | None, arguments: bytes | None) -> tuple[dict[str, Any] | None,
                                                                                        Err | None]:
            header: dict[str, Any] = {"k": "mcp", "op": op, "server": server}
            if tool is not None:
                header["tool"] = tool
            left = host.call_time_left()
            if left is not None:
                header["timeout"] = max(0.001, left * TIME_SHARE)
            host.before_effect()
            reply, _ = host.ask_gateway(header, *([arguments] if arguments is not None else []))
            if "denied" in reply:
                host.record(DENIED, {"server": server, "tool": tool, "reason": reply["denied"]})
                return None, Err(f"permission denied: {reply['denied']}")
            if "err" in reply:
                return None, Err(reply["err"])
            return reply, None

        def list_tools(server: str) -> Ok | Err:
            reply, err = ask("list", server, None, None)
            if err is not None:
                return err
            assert reply is not None
            return Ok([record(name=t["name"], description=t["description"], input_schema=t["input_schema"])
                       for t in reply["value"]])

        def call_tool(server: str, tool: str, arguments: str) -> Ok | Err:
            try:
                args = orjson.loads(arguments)
            except orjson.JSONDecodeError as e:
                return Err(f"arguments: not JSON: {e}")
            if not isinstance(args, dict):
                return Err("arguments: expected a JSON object")
            reply, err = ask("call", server, tool, arguments.encode())
            if err is not None:
                return err
            assert reply is not None
            v = reply["value"]
            return Ok(record(content=v["content"], structured=v.get("structured"), is_error=bool(v["is_error"])))
        return {INTERFACE: {"list-tools": errors_as_err(list_tools), "call-tool": errors_as_err(call_tool)}}

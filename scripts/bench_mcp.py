"""An MCP tool call into an actor, against the same request made the plain way.

Used by ``scripts/bench.py --only mcp``. The actor is ``tests/actors/tools.wat`` (its ``echo``
tool replies with the request it got). Measured, each as a round trip from this process:
  mcp_stdio   the MCP SDK's client calls ``tools.echo`` through ``theater mcp`` (stdio), which
              checks the arguments against the tool's schema and makes the request
  mcp_http    the same through ``theater mcp --http`` (streamable HTTP on loopback)
  request     ``Client.request`` with the same bytes: what ``theater message --request`` does
              once its process is up
  cli         ``theater message ID DATA --request`` as a process (start-up included; fewer samples)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tests" / "actors" / "tools.toml"


async def _mcp_calls(server: Any, n: int) -> list[float]:
    from mcp import Client
    async with Client(server) as c:
        for _ in range(50):
            await c.call_tool("tools.echo", {"text": "x"})
        lat = []
        for _ in range(n):
            t = time.perf_counter()
            await c.call_tool("tools.echo", {"text": "x"})
            lat.append((time.perf_counter() - t) * 1e6)
    return lat


def mcp_overhead(client: Any, home: Path, n: int) -> dict[str, float]:
    """``client``: a theater Client of the bench's server at ``home``."""
    from mcp import StdioServerParameters

    from theater.mcptools import request_message
    actor = client.start(TOOLS)["id"]
    message = request_message("echo", {"text": "x"})
    try:
        for _ in range(50):
            client.request(actor, message)
        plain = []
        for _ in range(n):
            t = time.perf_counter()
            client.request(actor, message)
            plain.append((time.perf_counter() - t) * 1e6)
        base = [sys.executable, "-m", "theater", "--home", str(home)]
        stdio = anyio.run(_mcp_calls, StdioServerParameters(command=base[0], args=[*base[1:], "mcp"], cwd=str(ROOT)), n)
        web = subprocess.Popen([*base, "mcp", "--http", "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert web.stderr is not None
            url = next(line.split("listening on ", 1)[1].strip() for line in web.stderr if "listening on " in line)
            http = anyio.run(_mcp_calls, url, n)
        finally:
            web.kill()
            web.wait()
        cli = []
        for _ in range(10):
            t = time.perf_counter()
            subprocess.run([*base, "message", actor, message.decode(), "--request"], capture_output=True, check=True,
                           cwd=ROOT)
            cli.append((time.perf_counter() - t) * 1e3)
    finally:
        client.stop(actor)
    return {"mcp_stdio_p50_us": statistics.median(stdio), "mcp_http_p50_us": statistics.median(http),
            "mcp_request_p50_us": statistics.median(plain), "mcp_cli_process_p50_ms": statistics.median(cli)}

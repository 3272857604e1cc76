"""A small MCP server, written with the MCP SDK: made-up weather, the same for a city every time.

    python weather.py                          stdio (what relay.toml's grant starts)
    python weather.py --http 127.0.0.1:0       streamable HTTP at http://HOST:PORT/mcp (0: any free port;
                                               it says where on stderr)
    --log FILE                                 append each tool call it gets as a JSON line

Tools: forecast(city) and alerts(city). relay.toml allows its actor forecast only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys

import anyio
from mcp.server.mcpserver import MCPServer

SKIES = ("sunny", "cloudy", "rainy", "windy", "foggy", "snowy")
server = MCPServer("weather", version="1.0")
log_file: str | None = None


def _log(tool: str, **arguments: str) -> None:
    if log_file:
        with open(log_file, "a") as f:
            f.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def forecast(city: str) -> str:
    """Tomorrow's weather for a city."""
    _log("forecast", city=city)
    if not city.strip():
        raise ValueError("which city?")
    n = int.from_bytes(hashlib.sha256(city.lower().encode()).digest()[:4], "big")
    return f"{city}: {SKIES[n % len(SKIES)]}, {n % 35 - 5}°C"


@server.tool()
def alerts(city: str) -> str:
    """Weather alerts for a city."""
    _log("alerts", city=city)
    return f"{city}: no alerts"


async def serve_http(host: str, port: int) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, port))
    sock.listen(64)
    app = server.streamable_http_app()
    web = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    async with anyio.create_task_group() as tg:
        async def announce() -> None:
            while not web.started:
                await anyio.sleep(0.01)
            print(f"listening on http://{host}:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)
        tg.start_soon(announce)
        await web.serve(sockets=[sock])


def main() -> None:
    global log_file
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--http", metavar="HOST:PORT")
    p.add_argument("--log", metavar="FILE")
    args = p.parse_args()
    log_file = args.log
    if args.http:
        host, _, port = args.http.rpartition(":")
        anyio.run(serve_http, host or "127.0.0.1", int(port))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()

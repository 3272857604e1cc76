"""The ``mcp-client`` grant: which MCP servers an actor may use, and which of their tools.

    [[handler]]
    type = "mcp-client"

    [handler.servers.weather]                   # a name the actor uses: list-tools("weather")
    command = "python3"                         # stdio: a program the gateway starts and owns
    args = ["weather.py"]
    cwd = "."                                   # relative to the manifest (the default)
    env = { API_KEY = "${secret:WEATHER_KEY}" } # placed by the gateway; never seen by the actor
    allowed_tools = ["forecast"]                # required; [] = none, ["*"] = every tool it lists
    timeout = "30s"                             # one call, at most; default 30s, at most 10m

    [handler.servers.search]
    url = "https://mcp.example.com/mcp"         # streamable HTTP; the URL is its own allow-list entry
    headers = { authorization = "Bearer ${secret:SEARCH_TOKEN}" }
    allowed_tools = ["search"]

A URL is held to ``http-client``'s address rules (``theater.egress``): a name that resolves
to a loopback or private address is refused unless the URL names that address itself.
The gateway (``supervisor/gateway/mcp.py``) runs the sessions; ``within`` keeps an actor from
handing its children more than it has (a ``command`` runs on the host).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import egress, secrets
from ._units import parse_duration

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEYS = ("command", "args", "env", "cwd", "url", "headers", "allowed_tools", "timeout")
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0


def check_servers(value: Any) -> dict[str, dict[str, Any]]:
    """The ``servers`` key: a table of server name -> its table; ValueError says what is allowed."""
    if not isinstance(value, dict) or not value:
        raise ValueError("expected a table of servers, e.g. [handler.servers.NAME] with command = \"...\" "
                         "or url = \"...\", and allowed_tools = [...]")
    return {name: _server(name, spec) for name, spec in value.items()}


def _server(name: str, spec: Any) -> dict[str, Any]:
    where = f"servers.{name}"
    if not NAME.match(name):
        raise ValueError(f"{where}: a server name is 1 to 64 letters, digits, _ or -")
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a table")
    for key in spec:
        if key not in KEYS:
            raise ValueError(f"{where} {key}: unknown key (allowed: {', '.join(KEYS)})")
    if ("command" in spec) == ("url" in spec):
        raise ValueError(f"{where}: give either command (a stdio server) or url (a streamable HTTP server)")
    tools = spec.get("allowed_tools")
    if not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools):
        raise ValueError(f"{where} allowed_tools: required, a list of tool names ([\"*\"]: every tool)")
    out: dict[str, Any] = {"allowed_tools": list(tools), "timeout": _timeout(spec.get("timeout"), where)}
    if "command" in spec:
        for key in ("url", "headers"):
            if key in spec:
                raise ValueError(f"{where} {key}: only for a url server")
        out["command"] = _string(spec["command"], f"{where} command")
        args = spec.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"{where} args: expected a list of strings")
        out["args"] = list(args)
        out["env"] = _templates(spec.get("env", {}), f"{where} env", lambda k: bool(re.match(r"^[A-Za-z_]\w*$", k)))
        out["cwd"] = _string(spec.get("cwd", "."), f"{where} cwd")
    else:
        for key in ("args", "env", "cwd"):
            if key in spec:
                raise ValueError(f"{where} {key}: only for a command server")
        out["url"] = check_url(spec["url"], where)
        out["headers"] = {k.lower(): v for k, v in
                          _templates(spec.get("headers", {}), f"{where} headers", egress.is_header_name).items()}
    return out


def check_url(url: Any, where: str) -> str:
    if not isinstance(url, str):
        raise ValueError(f"{where} url: expected an http:// or https:// URL")
    parts = urlsplit(url)
    if parts.scheme not in egress.DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{where} url = {url!r}: expected an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError(f"{where} url: no credentials in the URL (use headers with ${{secret:NAME}})")
    pattern(url)          # the host must be one the allow-list rules can name
    return url


def pattern(url: str) -> egress.HostPattern:
    """The allow-list entry a server's URL stands for: its host and port, nothing else."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or egress.DEFAULT_PORTS[parts.scheme]
    return egress.parse_pattern(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


def _timeout(value: Any, where: str) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = parse_duration(value)
    except ValueError as e:
        raise ValueError(f"{where} timeout: {e}") from None
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError(f"{where} timeout: expected a duration above 0 and at most \"10m\"")
    return seconds


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError(f"{where}: expected a non-empty string")
    return value


def _templates(value: Any, where: str, key_ok: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and key_ok(k) for k in value):
        raise ValueError(f"{where}: expected a table of names to values (values may hold ${{secret:NAME}})")
    try:
        return {k: secrets.check_template(v) for k, v in value.items()}
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def launch(spec: dict[str, Any], base: str) -> dict[str, Any]:
    """A stdio server's command line as it runs: cwd, and a command with a slash, from the
    manifest's folder."""
    cwd = Path(base) / spec["cwd"]
    command = spec["command"]
    if "/" in command and not Path(command).is_absolute():
        command = str(Path(base) / command)
    return {**spec, "command": command, "cwd": str(cwd)}


def within(child: dict[str, Any], child_base: str, parent: dict[str, Any] | None, parent_base: str) -> str | None:
    """Why a spawned child's ``mcp-client`` grant is more than its parent's, or None: each of its
    servers must be one of the parent's (the same program or URL, run the same way), with
    allowed_tools among the parent's."""
    mine = {n: _how(s, parent_base) for n, s in ((parent or {}).get("servers") or {}).items()}
    for name, spec in child.get("servers", {}).items():
        how = _how(spec, child_base)
        match = next((n for n, h in mine.items() if h == how), None)
        if match is None:
            return f"servers.{name}: its parent has no such server (a child gets no more than its parent)"
        theirs = set(parent["servers"][match]["allowed_tools"]) if parent else set()
        if "*" not in theirs and not set(spec["allowed_tools"]) <= theirs:
            return f"servers.{name} allowed_tools: more than its parent's {sorted(theirs)}"
    return None


def _how(spec: dict[str, Any], base: str) -> Any:
    run = launch(spec, base) if "command" in spec else spec
    return {k: v for k, v in run.items() if k not in ("allowed_tools", "timeout")}

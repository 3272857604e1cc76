"""What ``theater mcp`` offers an MCP client: management tools, and every running actor's own tools.

Management tools are named ``theater_<verb>``; an actor's tools ``<actor name>.<tool>`` (the
actor's name with anything but letters, digits, ``_`` and ``-`` made ``-``, and ``-<id
prefix>`` added when two running actors offering tools share a name). The two never
collide: only actor tools hold a dot. Each management tool runs with a ``Client`` of the
server (blocking; ``theater.mcp_server`` runs it on a thread) and returns JSON-able data.
No MCP SDK here: this is the part that can be read and tested without it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .client import Client
from .events import from_wire as event_from_wire
from .mcptools import Tool

# One page of `theater_events` holds at most this many events (an agent's context is small).
EVENTS_PAGE_MAX = 200
EVENTS_PAGE_DEFAULT = 50

ACTOR = {"type": "string", "description": "actor id (or a unique prefix of it, or its name)"}


@dataclass(frozen=True)
class Management:
    name: str
    description: str
    input_schema: dict[str, Any]
    run: Callable[[Client, dict[str, Any]], Any]
    changes: bool = False           # starts or stops actors: left out when read-only


@dataclass(frozen=True)
class ActorTool:
    mcp_name: str
    actor_id: str
    actor_name: str
    tool: Tool


def _object(properties: dict[str, Any] | None = None, required: Iterable[str] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties or {}, "required": list(required),
            "additionalProperties": False}


def _events(c: Client, a: dict[str, Any]) -> dict[str, Any]:
    since, limit = a.get("since", 0), a.get("limit", EVENTS_PAGE_DEFAULT)
    events: list[dict[str, Any]] = []
    while True:         # pages: one may be short where a filter passed over many events
        header, frames = c.call("events", actor=a["actor"], since=since, limit=limit - len(events),
                                types=a.get("types") or [])
        events += [event_from_wire(header["actor"], m, d).to_json() for m, d in zip(header["events"], frames,
                                                                                    strict=True)]
        since = header.get("next") if header.get("more") else None
        if since is None or len(events) >= limit:
            return {"actor": header["actor"], "events": events, "next_since": since}


def _verify(c: Client, a: dict[str, Any]) -> Any:
    return c.call("verify", **({"actor": a["actor"]} if a.get("actor") else {}))[0]["reports"]


def _start(c: Client, a: dict[str, Any]) -> dict[str, Any]:
    info = c.start(a["manifest"])
    return {"id": info["id"], "name": info["name"], "pid": info.get("pid")}


MANAGEMENT: tuple[Management, ...] = (
    Management("theater_list", "List the actors on this theater server: id, name, status, pid, restarts, "
               "last error, parent.", _object(), lambda c, a: c.call("list")[0]["actors"]),
    Management("theater_inspect", "One actor in detail: status, pid, restarts, last error and exit, handlers, "
               "restart policy, limits, stats.", _object({"actor": ACTOR}, ["actor"]),
               lambda c, a: c.inspect(a["actor"])),
    Management("theater_events", "One page of an actor's signed event chain (every call into it and every "
               "host call it made), from sequence number `since`; `next_since` gives the next page, null "
               "at the end.",
               _object({"actor": ACTOR,
                        "since": {"type": "integer", "minimum": 0, "description": "first sequence number"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": EVENTS_PAGE_MAX},
                        "types": {"type": "array", "items": {"type": "string"},
                                  "description": "only these event types, e.g. \"wasm\""}}, ["actor"]),
               _events),
    Management("theater_verify", "Verify event chains (hashes, links, signatures): one actor's, or every "
               "chain in the store.", _object({"actor": ACTOR}), _verify),
    Management("theater_tree", "The supervision tree: each actor with its strategy, restart type and "
               "children.", _object(), lambda c, a: c.call("tree")[0]["tree"]),
    Management("theater_start", "Start an actor from a manifest file on this machine; answers its id once "
               "its init is done.",
               _object({"manifest": {"type": "string", "description": "path to the actor's manifest.toml"}},
                       ["manifest"]), _start, changes=True),
    Management("theater_stop", "Stop an actor (its children first) and forget it; its chain stays.",
               _object({"actor": ACTOR}, ["actor"]), lambda c, a: c.stop(a["actor"]), changes=True),
)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def actor_tools(actors: list[dict[str, Any]]) -> dict[str, ActorTool]:
    """MCP name -> tool, from the server's ``tools`` answer. A tool is named ``NAME.TOOL`` by
    its actor's name; actors that share a prefix are told apart by their ids (8 characters,
    then all of them), so no actor, whatever its name, takes another's tool names."""
    prefixes = {a["id"]: _UNSAFE.sub("-", a["name"])[:48] or "actor" for a in actors}
    for width in (8, 36, 36, 36):           # each pass lengthens every prefix still shared
        counts = Counter(prefixes.values())
        clashing = [a["id"] for a in actors if counts[prefixes[a["id"]]] > 1]
        if not clashing:
            break
        for actor_id in clashing:
            prefixes[actor_id] = f"{prefixes[actor_id]}-{actor_id[:width]}"
    out: dict[str, ActorTool] = {}
    for a in actors:
        prefix = prefixes[a["id"]]
        for t in a["tools"]:
            if f"{prefix}.{t['name']}" in out:      # still shared (ids alike): neither is taken over
                continue
            tool = Tool(t["name"], t["description"], t["input_schema"])
            out[f"{prefix}.{tool.name}"] = ActorTool(f"{prefix}.{tool.name}", a["id"], a["name"], tool)
    return out

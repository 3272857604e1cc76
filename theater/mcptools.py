"""The tools an actor offers MCP clients: its manifest's ``[[mcp.tool]]`` tables.

    [[mcp.tool]]
    name = "forecast"                       # letters, digits, _ and -: the MCP name is "<actor>.<name>"
    description = "The weather for a city"  # what an agent reads to choose the tool
    input_schema = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }

``theater mcp`` lists each running actor's tools and turns a call into an ordinary request
to that actor (``request_message``): in its chain, under its limits and supervision. The
schema is checked here for its shape (an object schema made of JSON values); the MCP server
validates each call's arguments against it before anything reaches the actor.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEYS = ("name", "description", "input_schema")
# What a tool's input_schema is when the manifest gives none: any object.
DEFAULT_SCHEMA: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SCHEMA))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


def request_message(tool: str, arguments: dict[str, Any]) -> bytes:
    """The request an actor gets for a call of one of its tools: compact JSON, ``tool`` first,
    ``{"tool":"forecast","arguments":{"city":"Paris"}}`` (a guest may rely on that order)."""
    return orjson.dumps({"tool": tool, "arguments": arguments})


def check(raw: Any) -> tuple[Tool, ...]:
    """The ``[mcp]`` table: its ``tool`` array. ValueError's message starts with where, then ": "."""
    if not isinstance(raw, dict):
        raise ValueError("mcp: expected an [mcp] table holding [[mcp.tool]] tables")
    for key in raw:
        if key != "tool":
            raise ValueError(f"[mcp] {key}: unknown key (allowed: tool)")
    tables = raw.get("tool", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError("[mcp] tool: expected [[mcp.tool]] tables")
    tools: list[Tool] = []
    for i, t in enumerate(tables):
        where = f"[[mcp.tool]] #{i + 1}"
        for key in t:
            if key not in KEYS:
                raise ValueError(f"{where} {key}: unknown key (allowed: {', '.join(KEYS)})")
        name, description = t.get("name"), t.get("description")
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError(f"{where} name = {name!r}: expected 1 to 64 letters, digits, _ or -")
        if any(x.name == name for x in tools):
            raise ValueError(f"{where} name = {name!r}: declared twice")
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"{where} ({name}) description: missing (a string that tells an agent what it does)")
        schema = t.get("input_schema", DEFAULT_SCHEMA)
        _check_schema(schema, f"{where} ({name}) input_schema")
        tools.append(Tool(name, description, dict(schema)))
    return tuple(tools)


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ValueError(f"{where}: expected a JSON Schema table with type = \"object\" "
                         "(MCP passes a tool's arguments as an object)")
    bad = _non_json(schema)
    if bad is not None:
        raise ValueError(f"{where}: {bad} is not a JSON value (TOML dates and times have no JSON form)")
    props = schema.get("properties", {})
    if not isinstance(props, dict) or not all(isinstance(p, dict) for p in props.values()):
        raise ValueError(f"{where} properties: expected a table of property name to schema table")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValueError(f"{where} required: expected a list of property names")


def _non_json(value: Any) -> str | None:
    """The first value in a TOML tree that JSON cannot hold, as text."""
    if isinstance(value, datetime.date | datetime.time):
        return repr(value.isoformat())
    if isinstance(value, dict):
        return next((bad for v in value.values() if (bad := _non_json(v)) is not None), None)
    if isinstance(value, list):
        return next((bad for v in value if (bad := _non_json(v)) is not None), None)
    return None


# JSON Schema (2020-12) keywords whose values are schemas, or maps or lists of them
_SUBSCHEMA = ("items", "not", "if", "then", "else", "contains", "additionalProperties", "propertyNames",
              "unevaluatedItems", "unevaluatedProperties")
_SUBSCHEMAS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "dependentSchemas")
# what is not evaluated: regular expressions, and what could lead to one the walk below does not see
_UNSAFE = ("pattern", "patternProperties", "$ref", "$dynamicRef", "$recursiveRef", "$schema")
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def unsafe_keyword(schema: Any, where: str = "input_schema") -> str | None:
    """Where ``schema`` asks for what theater does not evaluate, or None. A regular expression
    (``pattern``, ``patternProperties``) from a manifest, matched by Python's backtracking
    ``re``, can take minutes on a crafted argument (``^(a+)+$`` and 30 characters); a
    reference (``$ref``...) or another draft than 2020-12 (``$schema``: its own keywords hold
    schemas) could lead to one this walk does not see."""
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key in _UNSAFE and not (key == "$schema" and where == "input_schema" and value in (DRAFT, DRAFT + "#")):
            return f"{where}.{key}"
        subs: list[tuple[str, Any]] = []
        if key in _SUBSCHEMA:
            subs = list(enumerate(value)) if isinstance(value, list) else [("", value)]
        elif key in _SUBSCHEMAS and isinstance(value, list):
            subs = list(enumerate(value))
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            subs = list(value.items())
        for name, sub in subs:
            found = unsafe_keyword(sub, f"{where}.{key}" + (f".{name}" if name != "" else ""))
            if found is not None:
                return found
    return None

"""What an actor may hand the children it spawns: never more than it holds itself.

A parent granted ``supervisor`` writes its children's manifests. Unchecked, such a manifest
is a way round the parent's own: a child asking for the filesystem's root, any host, a
server secret or looser limits would get them, and the parent would drive it by messages.
So a child's manifest is held to its parent's: every handler type the child has, the parent
has, with a grant that reaches no further (each type's rule below; a plug-in's grant only
as its parent holds it), and every limit at most the parent's, both as the server's
defaults complete them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from . import egress, mcpgrant, secrets
from ._units import format_size, human_duration
from .grants import SPECS, variable_granted
from .manifest import Limits, Manifest

# (child's config, child's base directory, parent's config, parent's base) -> why not, or None
Rule = Callable[[Mapping[str, Any], str, Mapping[str, Any], str], "str | None"]
# limits where 0 means none: a child of a limited parent must set one, no larger
_ZERO_IS_NONE = ("fuel", "cpu")
_SIZES = frozenset({"memory", "process_memory", "event_bytes_per_second", "max_bytes", "max_response_bytes",
                    "max_file_size"})
_DURATIONS = frozenset({"call_timeout", "timeout", "command_timeout", "max_sleep_duration", "min_sleep_duration"})


def beyond(parent: Manifest, parent_base: str, child: Manifest, child_base: str, defaults: Limits) -> str | None:
    """Why ``child`` would hold more than ``parent``, or None."""
    for h in child.handlers:
        theirs = [p.config for p in parent.handlers if p.type == h.type]
        where = f"[[handler]] ({h.type})"
        if not theirs:
            return f"{where}: its parent has no {h.type} grant (a child gets no more than its parent)"
        rule = _RULES.get(h.type, _same)
        whys = [rule(h.config, child_base, config, parent_base) for config in theirs]
        if all(whys):
            return f"{where} {whys[0]}"
    return _limits(parent.effective_limits(defaults), child.effective_limits(defaults))


def _limits(parent: Limits, child: Limits) -> str | None:
    for f in fields(Limits):
        mine, theirs = getattr(child, f.name), getattr(parent, f.name)
        zero_is_none = f.name in _ZERO_IS_NONE
        if (theirs != 0 and (mine == 0 or mine > theirs)) if zero_is_none else mine > theirs:
            shown = "none" if zero_is_none and mine == 0 else _shown(f.name, mine)
            return f"[limits] {f.name} = {shown}: looser than its parent's ({_shown(f.name, theirs)})"
    return None


def _shown(key: str, value: float) -> str:
    """A value as a manifest would write it."""
    if key in _SIZES:
        return f'"{format_size(int(value))}"'
    if key in _DURATIONS:
        return f'"{human_duration(value)}"'
    return f"{value:g}"


def _same(mine: Mapping[str, Any], base: str, theirs: Mapping[str, Any], parent_base: str) -> str | None:
    """A grant this module has no rule for (a plug-in's) goes down only as it is, from the same
    directory (a relative path in it would mean another place from another)."""
    if dict(mine) != dict(theirs):
        return "differs from its parent's grant (handed down only as it is)"
    if mine and os.path.realpath(base) != os.path.realpath(parent_base):
        return "is handed down only to a child whose manifest is in its parent's directory"
    return None


def _at_most(type_: str, *keys: str) -> Callable[[Mapping[str, Any], Mapping[str, Any]], str | None]:
    spec = SPECS[type_]

    def check(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> str | None:
        for key in keys:
            if spec.value(mine, key) > spec.value(theirs, key):
                return f"{key}: more than its parent's ({_shown(key, spec.value(theirs, key))})"
        return None
    return check


def _caps(type_: str, *keys: str) -> Rule:
    check = _at_most(type_, *keys)
    return lambda mine, _b, theirs, _pb: check(mine, theirs)


_http_caps = _at_most("http-client", "timeout", "max_response_bytes")


def _http(mine: Mapping[str, Any], _base: str, theirs: Mapping[str, Any], _parent_base: str) -> str | None:
    spec = SPECS["http-client"]
    parents = [egress.parse_pattern(p) for p in theirs["allowed_hosts"]]
    for text in mine["allowed_hosts"]:
        if not any(p.covers(egress.parse_pattern(text)) for p in parents):
            return f"allowed_hosts: {text!r} is not within its parent's {list(theirs['allowed_hosts'])}"
    extra = set(spec.value(mine, "allowed_methods")) - set(spec.value(theirs, "allowed_methods"))
    if extra:
        return f"allowed_methods: {sorted(extra)} beyond its parent's"
    placed = spec.value(theirs, "headers")
    for name, template in spec.value(mine, "headers").items():
        if secrets.refs(template) and placed.get(name) != template:
            return f"headers {name}: names a secret its parent's grant does not place in that header"
    return _http_caps(mine, theirs)


_timing_caps = _at_most("timing", "max_sleep_duration")


def _timing(mine: Mapping[str, Any], _base: str, theirs: Mapping[str, Any], _parent_base: str) -> str | None:
    spec = SPECS["timing"]
    floor = spec.value(theirs, "min_sleep_duration")
    if spec.value(mine, "min_sleep_duration") < floor:
        return f"min_sleep_duration: less than its parent's ({_shown('min_sleep_duration', floor)})"
    return _timing_caps(mine, theirs)


def _environment(mine: Mapping[str, Any], _base: str, theirs: Mapping[str, Any], _parent_base: str) -> str | None:
    denied = set(mine.get("denied_vars", ()))
    for name in mine.get("allowed_vars", ()):
        if name not in denied and not variable_granted(theirs, name):
            return f"allowed_vars: {name!r} is not granted to its parent"
    for prefix in mine.get("allowed_prefixes", ()):
        if not prefix.startswith(tuple(theirs.get("allowed_prefixes", ()))):
            return f"allowed_prefixes: {prefix!r} is not within its parent's prefixes"
        shown = [d for d in theirs.get("denied_vars", ()) if d.startswith(prefix) and d not in denied]
        if shown:
            return f"denied_vars: must deny {shown[0]!r}, as its parent's grant does"
    if mine.get("allow_list_all") and not theirs.get("allow_list_all"):
        return "allow_list_all: its parent may not list the variables"
    return None


_filesystem_caps = _at_most("filesystem", "max_file_size", "command_timeout")


def _filesystem(mine: Mapping[str, Any], base: str, theirs: Mapping[str, Any], parent_base: str) -> str | None:
    root = os.path.realpath(os.path.join(parent_base, theirs["path"]))
    path = os.path.realpath(os.path.join(base, mine["path"]))     # symlinks resolved: none leads out
    if path != root and not path.startswith(root.rstrip(os.sep) + os.sep):
        return f"path: {path} is outside its parent's directory {root}"
    if mine.get("new_dir") and path == root and not theirs.get("new_dir"):
        return "new_dir: its parent may not create its own directory"
    extra = [c for c in mine.get("allowed_commands", ()) if c not in theirs.get("allowed_commands", ())]
    if extra:
        return f"allowed_commands: {extra[0]!r} is not among its parent's"
    return _filesystem_caps(mine, theirs)


def _mcp(mine: Mapping[str, Any], base: str, theirs: Mapping[str, Any], parent_base: str) -> str | None:
    return mcpgrant.within(dict(mine), base, dict(theirs), parent_base)


_RULES: dict[str, Rule] = {
    "http-client": _http,
    "store": _caps("store", "max_bytes"),
    "timing": _timing,
    "random": _caps("random", "max_bytes"),
    "environment": _environment,
    "filesystem": _filesystem,
    "mcp-client": _mcp,
}

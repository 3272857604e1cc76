"""What each handler type grants and which manifest keys it takes: the manifest's half of a handler.

A ``[[handler]]`` table in a manifest names a type; its spec here says which interfaces a
component granted it may import, which of the actor's exports the host calls for it, and
how each of its keys is checked. The worker's half (``worker/handlers/``) implements the
functions. Both halves are found by the handler's type name, so adding a handler means one
spec here, one module there, and their tests.

Handlers from outside the package (a test's own, an extension) register their spec from a
module named in ``THEATER_PLUGINS`` (comma-separated module names), which every Theater
process imports at start through ``load_plugins``; such a spec carries its own WIT and the
module that implements it in the worker.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import egress, mcpgrant, secrets
from ._units import MAX_DURATION, parse_duration, parse_size
from .errors import UsageError

# A key's check: the value as written -> the value as used; ValueError says what is allowed.
Check = Callable[[Any], Any]

PLUGINS_ENV = "THEATER_PLUGINS"


@dataclass(frozen=True)
class Spec:
    type: str
    imports: tuple[str, ...]                     # interfaces (no version) a granted actor may import
    exports: tuple[str, ...] = ()                # the actor's interfaces the host calls for this handler
    keys: Mapping[str, Check] = field(default_factory=dict)   # config keys beside `type`
    required: tuple[str, ...] = ()               # keys a grant must give (fail-closed handlers)
    wit: str | None = None                       # WIT text of interfaces outside theater/wit (plug-ins)
    worker: str | None = None                    # module implementing it in the worker (plug-ins)
    # what its worker half reaches on the filesystem (theater.sandbox.view): (config, base) ->
    # {"write": directories, "make": those it may create, "run": programs}
    view: Callable[[Mapping[str, Any], str], dict[str, list[str]]] | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)  # what a key not given means

    def value(self, config: Mapping[str, Any], key: str) -> Any:
        """A key's value in a grant: as given, else its default (None: no default)."""
        return config.get(key, self.defaults.get(key))


SPECS: dict[str, Spec] = {}


def register(spec: Spec) -> Spec:
    SPECS[spec.type] = spec
    return spec


def for_interface(interface: str) -> Spec | None:
    """The handler that grants ``interface`` (an import), if any does."""
    return next((s for s in SPECS.values() if interface in s.imports), None)


def load_plugins(env: Mapping[str, str] = os.environ) -> None:
    """Imports the modules named in THEATER_PLUGINS (each registers its specs)."""
    for name in filter(None, (n.strip() for n in env.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except Exception as e:          # whatever a plug-in does wrong, one line says which and why
            raise UsageError(f"{PLUGINS_ENV}: cannot load plug-in {name!r}: {type(e).__name__}: {e}") from None


register(Spec("runtime", imports=("theater:simple/runtime",)))
register(Spec("message-server", imports=("theater:simple/message-server-host",),
              exports=("theater:simple/message-server-client",)))
register(Spec("supervisor", imports=("theater:simple/supervisor",),
              exports=("theater:simple/supervisor-handlers",)))


# ---- the gateway's handlers: the requests run in the gateway process (supervisor/gateway) ----------

# http-client: a response body is recorded whole in the chain (a replay needs nothing else), so
# its size is bounded here: 1 MiB unless the manifest says more, never more than 16 MiB.
HTTP_DEFAULT_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HTTP_DEFAULT_TIMEOUT = 30.0
HTTP_DEFAULT_MAX_RESPONSE = 1 << 20
HTTP_MAX_RESPONSE = 16 << 20
# store: the most a store may hold after a write by an actor granted this (64 MiB by default).
STORE_DEFAULT_MAX_BYTES = 64 << 20


def _bounded(parse: Callable[[Any], float], lo: float, hi: float, what: str) -> Check:
    def check(value: Any) -> Any:
        n = parse(value)
        if not lo < n <= hi:
            raise ValueError(f"expected {what}")
        return n
    return check


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and egress.is_header_name(k) for k in value):
        raise ValueError("expected a table of header names to values, e.g. "
                         "{ authorization = \"Bearer ${secret:API_KEY}\" }")
    return {k.lower(): secrets.check_template(v) for k, v in value.items()}


register(Spec("http-client", imports=("theater:simple/http-client",), keys={
    "allowed_hosts": egress.check_patterns,
    "allowed_methods": egress.check_methods,
    "timeout": _bounded(parse_duration, 0, 600, "a duration above 0 and at most \"10m\""),
    "max_response_bytes": _bounded(parse_size, 0, HTTP_MAX_RESPONSE, "a size above 0 and at most \"16MiB\""),
    "headers": _headers,
}, required=("allowed_hosts",), defaults={
    "allowed_methods": list(HTTP_DEFAULT_METHODS), "timeout": HTTP_DEFAULT_TIMEOUT,
    "max_response_bytes": HTTP_DEFAULT_MAX_RESPONSE, "headers": {}}))
register(Spec("store", imports=("theater:simple/store",), keys={
    "max_bytes": _bounded(parse_size, 0, 1 << 50, "a size such as \"64MiB\""),
}, defaults={"max_bytes": STORE_DEFAULT_MAX_BYTES}))
# ---- timing, random, environment, filesystem (issue 10) ----------------------------------------

def _millis(value: Any) -> float:
    """Seconds, from whole milliseconds (as v0.2 manifests write them) or a duration string."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return parse_duration(value / 1000 if value <= 1000 * MAX_DURATION else math.inf)    # bounded, no overflow
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("expected whole milliseconds (e.g. 3600000) or a duration such as \"1h\"")


def _seconds(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("expected a duration above zero, such as \"10s\"")
    return seconds


def _size(value: Any) -> int:
    n = parse_size(value)
    if n <= 0:
        raise ValueError("expected a size above zero, such as \"1MiB\"")
    return n


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _u64(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ValueError("expected an integer from 0 to 2^64 - 1")
    return value


def _strings(what: str, valid: Callable[[str], bool]) -> Check:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and valid(v) for v in value):
            raise ValueError(f"expected a list of {what}")
        return tuple(value)
    return check


def _var_name(name: str) -> bool:
    return bool(name) and "=" not in name and "\0" not in name


def _program(name: str) -> bool:
    """A bare program name (found on a fixed PATH) or an absolute path, nothing a shell would read."""
    return bool(name) and "\0" not in name and (name.startswith("/") or "/" not in name)


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError("expected the path of a directory (relative to the manifest, or absolute)")
    return value


def variable_granted(config: Mapping[str, Any], name: str) -> bool:
    """Whether an ``environment`` grant lets its actor see the variable ``name``: named in
    ``allowed_vars`` or starting with one of ``allowed_prefixes``, and not in ``denied_vars``."""
    if name in config.get("denied_vars", ()):
        return False
    return name in config.get("allowed_vars", ()) or name.startswith(tuple(config.get("allowed_prefixes", ())))


def granted_environment(config: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` an ``environment`` grant lets its actor see; nothing else
    ever reaches the actor's worker."""
    return {k: v for k, v in sorted(environ.items()) if variable_granted(config, k)}


register(Spec("timing", imports=("theater:simple/timing",),
              keys={"max_sleep_duration": _millis, "min_sleep_duration": _millis},
              defaults={"max_sleep_duration": 3600.0, "min_sleep_duration": 0.001}))    # v0.2's: 1 h, 1 ms
register(Spec("random", imports=("theater:simple/random",), keys={"seed": _u64, "max_bytes": _size},
              defaults={"max_bytes": 1 << 20}))
register(Spec("environment", imports=("theater:simple/environment",), keys={
    "allowed_vars": _strings("variable names", _var_name),
    "allowed_prefixes": _strings("non-empty prefixes of variable names", _var_name),
    "denied_vars": _strings("variable names", _var_name),
    "allow_list_all": _flag}))
def _filesystem_view(config: Mapping[str, Any], base: str) -> dict[str, list[str]]:
    # resolved now, and taken by the worker only as it is (theater._landlock.restrict's ``exact``):
    # a symlink swapped in afterwards fails the start instead of widening the view
    root = os.path.realpath(os.path.join(base, config["path"]))
    return {"write": [root], "make": [root] if config.get("new_dir") else [],
            "run": list(config.get("allowed_commands", ()))}


register(Spec("filesystem", imports=("theater:simple/filesystem",), required=("path",), keys={
    "path": _path, "new_dir": _flag, "max_file_size": _size, "command_timeout": _seconds,
    "allowed_commands": _strings("program names or absolute paths", _program)}, view=_filesystem_view,
    defaults={"new_dir": False, "max_file_size": 8 << 20, "command_timeout": 60.0, "allowed_commands": ()}))


# ---- mcp-client: the sessions run in the gateway too (theater.mcpgrant, docs/mcp.md) -------------
register(Spec("mcp-client", imports=("theater:simple/mcp-client",), keys={"servers": mcpgrant.check_servers},
              required=("servers",)))

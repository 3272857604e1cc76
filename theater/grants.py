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
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import egress, mcpgrant, secrets
from ._units import parse_duration, parse_size
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
    wit: str | None = None                       # WIT text of interfaces outside theater/wit (plug-ins)
    worker: str | None = None                    # module implementing it in the worker (plug-ins)
    required: tuple[str, ...] = ()               # keys a grant must give


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
}, required=("allowed_hosts",)))
register(Spec("store", imports=("theater:simple/store",), keys={
    "max_bytes": _bounded(parse_size, 0, 1 << 50, "a size such as \"64MiB\""),
}))


# ---- mcp-client: the sessions run in the gateway too (theater.mcpgrant, docs/mcp.md) -------------
register(Spec("mcp-client", imports=("theater:simple/mcp-client",), keys={"servers": mcpgrant.check_servers},
              required=("servers",)))

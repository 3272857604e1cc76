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

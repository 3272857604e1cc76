"""Theater: a WebAssembly actor host. This package is the shared core the three processes use.

Layout: ``theater`` (this package) holds what every process needs: ids, paths, manifests,
the wire protocol, the event chain's format, keys, the client and the CLI. The server
(``supervisor``), the per-actor worker (``worker``) and the chain process (``chain``) each
import it and nothing of each other; it imports none of them.
"""

from .errors import (
    ActorFailed,
    ComponentError,
    ManifestError,
    NotFound,
    ProtocolError,
    Refused,
    TheaterError,
    Timeout,
    Unreachable,
    UsageError,
    VerifyError,
)
from .events import Checkpoint, Event, verify_chain
from .manifest import Manifest
from .paths import Home

__version__ = "0.1.0"

__all__ = [
    "ActorFailed",
    "Checkpoint",
    "ComponentError",
    "Event",
    "Home",
    "Manifest",
    "ManifestError",
    "NotFound",
    "ProtocolError",
    "Refused",
    "TheaterError",
    "Timeout",
    "Unreachable",
    "UsageError",
    "VerifyError",
    "__version__",
    "verify_chain",
]

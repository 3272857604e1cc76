"""``$THEATER_HOME/server.toml``: what the server applies to every actor and to itself.

Every key is optional; an unknown key or a bad value is one line naming the file and the key,
as for manifests (whose checks this shares).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import secrets as _secrets
from ._units import parse_size
from .capacity import host_actors
from .errors import ManifestError
from .manifest import MAX_MANIFEST_FILE, STRATEGIES, Checker, Limits, read_toml, reason
from .paths import read_regular

DURABILITY = ("process", "machine")     # [chain] durability: docs/chain-format.md
@dataclass(frozen=True)
class Compile:
    """``[compile]``: what the process that compiles a component may use. It is not charged to
    any actor; Cranelift needs ~400 MiB for an 18 MB componentize-py component."""

    memory: int = 1 << 30              # its memory ceiling (cgroup, else RLIMIT_DATA)
    timeout: float = 300.0             # its wall time


@dataclass(frozen=True)
class ServerConfig:
    """``$THEATER_HOME/server.toml``: defaults for actors, the root supervisor's flags, the secrets
    manifests may place in outgoing requests (``theater.secrets``), the content store's cap, and
    what compiling a component may use."""

    limits: Limits = field(default_factory=Limits)
    strategy: str = "one_for_one"
    intensity: int = 3
    period: float = 5.0
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    store_max_bytes: int = 1 << 30     # the whole of $THEATER_HOME/store
    compile: Compile = field(default_factory=Compile)
    durability: str = "process"        # [chain]: when an acknowledged event is safe (docs/chain-format.md)
    max_actors: int = field(default_factory=host_actors)   # [root]: live actors at once, the server's whole tree
    source: Path = Path("server.toml")  # the file read (or that would be): the gateway reads it again,
                                       # and messages say where to change a setting


def load_server_config(path: Path) -> ServerConfig:
    """Reads server.toml if it exists (every key optional); ManifestError names file and key."""
    if not path.exists():
        return ServerConfig(source=path)
    try:
        text = read_regular(path, MAX_MANIFEST_FILE).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read server config: {reason(e)}") from None
    doc = read_toml(text, str(path))
    c = Checker(str(path))
    c.unknown(doc, {"limits", "root", "secrets", "store", "compile", "chain"}, "")
    root, store, secrets = doc.get("root", {}), doc.get("store", {}), doc.get("secrets", {})
    comp, chain = doc.get("compile", {}), doc.get("chain", {})
    for name, table in (("root", root), ("store", store), ("secrets", secrets), ("compile", comp),
                        ("chain", chain)):
        if not isinstance(table, dict):
            raise c.fail(name, f"expected a [{name}] table")
    c.unknown(root, {"strategy", "intensity", "period", "max_actors"}, "[root]")
    c.unknown(store, {"max_bytes"}, "[store]")
    c.unknown(comp, {"memory", "timeout"}, "[compile]")
    c.unknown(chain, {"durability"}, "[chain]")
    for name, value in secrets.items():
        if not _secrets.NAME.match(name) or not isinstance(value, str):
            raise c.fail(f"[secrets] {name}", "expected NAME = \"value\" (letters, digits and _; the value a string)")
    if secrets and path.stat().st_mode & 0o077:
        raise c.fail("[secrets]", "this file holds secrets: it must be readable by its owner only (chmod 600)")
    d = ServerConfig()
    strategy = root.get("strategy", d.strategy)
    if strategy not in STRATEGIES:
        raise c.fail(f"[root] strategy = {strategy!r}", f"expected one of {', '.join(STRATEGIES)}")
    durability = chain.get("durability", d.durability)
    if durability not in DURABILITY:
        raise c.fail(f"[chain] durability = {durability!r}", f"expected one of {', '.join(DURABILITY)} "
                     f"(acknowledged once written, surviving any process; or once fsynced, surviving the machine)")
    try:
        store_max = parse_size(store.get("max_bytes", d.store_max_bytes))
    except ValueError as e:
        raise c.fail(f"[store] max_bytes = {store.get('max_bytes')!r}", str(e)) from None
    return ServerConfig(limits=c.limits(doc.get("limits", {})), strategy=strategy,
                        intensity=c.integer(root, "intensity", "[root]", d.intensity, minimum=0),
                        period=c.duration(root, "period", "[root]", d.period, positive=True),
                        max_actors=c.integer(root, "max_actors", "[root]", d.max_actors, minimum=1),
                        secrets=dict(secrets), store_max_bytes=store_max, source=path, durability=durability,
                        compile=Compile(c.size(comp, "memory", d.compile.memory, "[compile]"),
                                        c.duration(comp, "timeout", "[compile]", d.compile.timeout, positive=True)))

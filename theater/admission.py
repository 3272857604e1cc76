"""What a manifest must meet to start a new actor, beyond what parsing checks.

These rules came after actors were saved under looser ones: an actor a server restores after
a restart, and a worker reading its own manifest, parse it without them, so an upgrade drops
no running actor. A new start (``theater start``, a spawn) must meet them.
"""

from __future__ import annotations

from . import mcptools
from ._units import format_size
from .errors import ManifestError
from .ids import name_problem
from .manifest import Manifest

# A worker's cgroup is charged ~6-10 MiB before its actor runs; a limit below that cannot be set.
MIN_PROCESS_MEMORY = 16 << 20


def check(m: Manifest) -> Manifest:
    """``m``, or ManifestError naming the key and what is allowed."""
    if (why := name_problem(m.name)) is not None:
        raise ManifestError(f"{m.source}: name = {m.name!r}: {why}")
    if "process_memory" in m.limits_given and m.limits.process_memory < MIN_PROCESS_MEMORY:
        raise ManifestError(f"{m.source}: [limits] process_memory = {format_size(m.limits.process_memory)}: must be "
                            f"at least {format_size(MIN_PROCESS_MEMORY)} (a worker process holds about 10MiB before "
                            f"its actor runs)")
    for tool in m.tools:
        if (where := mcptools.unsafe_keyword(tool.input_schema)) is not None:
            raise ManifestError(f"{m.source}: [[mcp.tool]] {tool.name} {where}: not allowed (theater mcp "
                                f"evaluates no regular expression, reference or other draft than 2020-12: a "
                                f"regular expression could keep it busy for minutes on a crafted argument)")
    return m

"""What the management API and the children requests work with: the server's parts, not the server.

Handlers of client requests (``api``) and of a supervising actor's requests (``children``)
get this bundle of collaborators; none of them sees the server's loop or sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theater import admission, attenuation
from theater import manifest as manifests
from theater.digests import FileDigests, stamp
from theater.errors import ManifestError
from theater.manifest import Manifest
from theater.paths import Home

from . import components
from .directory import Directory
from .gateway.link import GatewayLink
from .limits import Controller
from .outbox import Outbox, Then
from .registry import ActorRecord, Registry
from .relay import Relay
from .room import Room
from .supervision import Supervision


@dataclass
class Services:
    home: Home
    registry: Registry
    supervision: Supervision
    outbox: Outbox
    relay: Relay
    limits: Controller
    room: Room
    listen: str
    public_key: str = ""
    gateway: GatewayLink | None = None
    directory: Directory | None = None
    chain_error: str | None = None     # why the chain refuses new events, while it does (a full disk)
    # component files that actors' spawns name, by digest while unchanged: a componentize-py
    # child is 18 MB, read and hashed in the server's loop at every spawn otherwise
    digests: FileDigests = field(default_factory=FileDigests)

    def check_manifest(self, m: Manifest) -> None:
        """What a new actor's manifest must meet beyond parsing (``theater.admission``), and what
        only this server can check of it (its secrets)."""
        admission.check(m)
        if self.gateway is not None:
            self.gateway.check_manifest(m)

    def store_component(self, data: bytes, what: str, file: str = "<component>") -> str:
        """Stores a component for workers to load (readable by their group under --user)."""
        return components.store(self.home, data, what, for_group=self.supervision.user is not None, file=file)

    def stored_component(self, sha: str) -> str:
        return components.stored(self.home, sha)

    def child_component(self, m: Manifest, path: Path, root: str, what: str) -> str:
        """Stores the component file a spawn names (``manifest.component_path``, inside ``root``); a
        file spawned before and unchanged since is known by its digest, not read again."""
        sha = self.digests.get(path)
        if sha is not None and components.is_stored(self.home, sha):
            return sha
        before = stamp(path)
        sha = self.store_component(manifests.read_component(m, path, root), what, str(path))
        self.digests.remember(path, before, sha)
        return sha

    def check_child(self, parent: ActorRecord, m: Manifest, base: str) -> None:
        """Refuses a child that would hold more than its parent (``theater.attenuation``)."""
        why = attenuation.beyond(parent.manifest, parent.spec.base, m, base, self.supervision.config.limits)
        if why is not None:
            raise ManifestError(f"{m.source}: {why}")

    def ask_state(self, actor_id: str, running: bool, client: bytes | None = None, client_id: str = "",
                  then: Then | None = None) -> str:
        """The actor's state: from its worker while it runs, else the last one its chain committed
        (the request's id)."""
        answer: dict[str, Any] = {"client": client, "client_id": client_id, "then": then}
        if running:
            return self.outbox.ask_worker(actor_id, {"k": "get_state"}, **answer)
        return self.outbox.ask_chain({"k": "query", "what": "state", "actor": actor_id}, **answer)

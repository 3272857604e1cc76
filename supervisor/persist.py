"""The top-level actors a server brings back when it starts again on the same home.

Each top-level actor has ``$THEATER_HOME/actors/<id>.json`` (written atomically when it
starts, removed when someone stops it): its manifest, component hash and initial state.
A server that stops or crashes leaves them; the next one restarts each actor, which
resumes from the last state its chain committed, under the same id, so its chain
continues from its head. Children are not restored: their parents spawn them again.
An ephemeral server (``--ephemeral``, what ``theater run`` starts) keeps none: what it ran
must not come back as a ghost at the next start on that home.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from pathlib import Path
from typing import Any

import orjson

from theater.paths import write_atomically

from .registry import ActorRecord

log = logging.getLogger("theater.server")


class SavedActors:
    def __init__(self, folder: Path, keep: bool = True) -> None:
        self.folder = folder
        self.keep = keep
        folder.mkdir(mode=0o700, exist_ok=True)

    def save(self, rec: ActorRecord) -> None:
        """Saved while its worker starts: a save that fails (a full disk) is logged, and the
        actor runs without coming back after a server restart."""
        if not self.keep:
            return
        spec = rec.spec
        doc = {"id": rec.actor_id, "manifest": spec.manifest_text, "source": spec.manifest.source, "base": spec.base,
               "component": spec.component, "started_at": rec.started_at,
               "init_state": base64.b64encode(spec.init_state).decode() if spec.init_state is not None else None}
        try:
            write_atomically(self.folder / f"{rec.actor_id}.json", orjson.dumps(doc))
        except OSError as e:
            log.error("actor %s: cannot save it for a server restart (%s)", rec.actor_id, e.strerror or e)

    def remove(self, actor_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"{actor_id}.json").unlink()

    def load(self) -> list[dict[str, Any]]:
        """Saved actors in their original start order; unreadable files are reported and skipped."""
        docs = []
        for path in self.folder.glob("*.json"):
            try:
                doc = orjson.loads(path.read_bytes())
                if doc.get("init_state") is not None:
                    doc["init_state"] = base64.b64decode(doc["init_state"])
                docs.append(doc)
            except (OSError, orjson.JSONDecodeError, ValueError) as e:
                log.error("cannot restore the actor saved in %s: %s", path, e)
        return sorted(docs, key=lambda d: d.get("started_at", 0))

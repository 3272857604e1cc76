"""The top-level actors a server brings back when it starts again on the same home.

Each top-level actor has ``$THEATER_HOME/actors/<id>.json`` (written atomically when it
starts, removed when someone stops it): its manifest, component hash and initial state.
A server that stops or crashes leaves them; the next one restarts each actor, which
resumes from the last state its chain committed, under the same id, so its chain
continues from its head. An actor that had ended on its own (it exited, or failed for good
under its restart policy; not one stopped, nor one whose start failed, which the next server
tries again) is written again with how (``ended``): the next server lists it so, with its last
error, and does not run it again (a job done is not done twice) until someone restarts it;
``prune`` forgets it.
Children are not restored: their parents spawn them again.
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

from .registry import ActorRecord, Exit, ExitKind, Status

log = logging.getLogger("theater.server")


class SavedActors:
    def __init__(self, folder: Path, keep: bool = True) -> None:
        self.folder = folder
        self.keep = keep
        self._ended: set[str] = set()       # saved as ended: saved again when it starts anew
        folder.mkdir(mode=0o700, exist_ok=True)

    def save(self, rec: ActorRecord) -> None:
        """Saved while its worker starts, and again when it ends (then with how): a save that
        fails (a full disk) is logged, and the actor runs without coming back after a server restart."""
        if not self.keep:
            return
        spec = rec.spec
        doc: dict[str, Any] = {
            "id": rec.actor_id, "manifest": spec.manifest_text, "source": spec.manifest.source, "base": spec.base,
            "component": spec.component, "started_at": rec.started_at,
            "init_state": base64.b64encode(spec.init_state).decode() if spec.init_state is not None else None}
        ended = rec.status in (Status.EXITED, Status.FAILED) and not rec.alive
        if ended:
            doc["ended"] = {"status": str(rec.status), "last_error": rec.last_error, "restarts": rec.restarts,
                            "last_exit": rec.last_exit.to_dict() if rec.last_exit else None}
        try:
            write_atomically(self.folder / f"{rec.actor_id}.json", orjson.dumps(doc))
        except OSError as e:
            log.error("actor %s: cannot save it for a server restart (%s)", rec.actor_id, e.strerror or e)
            return
        (self._ended.add if ended else self._ended.discard)(rec.actor_id)

    def launched(self, rec: ActorRecord) -> None:
        """An actor saved as ended starts anew (restarted by someone): saved as running again."""
        if rec.actor_id in self._ended:
            self.save(rec)

    def restore_end(self, rec: ActorRecord, ended: dict[str, Any]) -> bool:
        """Gives a record brought back by a server restart how its actor had ended; False (logged)
        if what was saved cannot be read: it then starts, as before it had ended."""
        try:
            status, restarts, e = Status(ended["status"]), int(ended["restarts"]), ended.get("last_exit")
            last_exit = Exit(ExitKind(e["kind"]), str(e["reason"]), e.get("error"), status=e.get("status")) \
                if e else None
        except (KeyError, TypeError, ValueError) as err:
            log.error("actor %s: how it ended cannot be read from %s (%r); it starts again", rec.actor_id,
                      self.folder / f"{rec.actor_id}.json", err)
            return False
        if status not in (Status.EXITED, Status.FAILED):
            return False
        rec.status, rec.restarts, rec.last_exit, rec.last_error = status, restarts, last_exit, ended.get("last_error")
        self._ended.add(rec.actor_id)
        return True

    def remove(self, actor_id: str) -> None:
        self._ended.discard(actor_id)
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

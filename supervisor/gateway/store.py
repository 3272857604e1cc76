"""The content store (``store`` handler): content-addressed by SHA-256, with labels, shared by id.

    $THEATER_HOME/store/<store id>/objects/<sha256>   content, named by the hash of its bytes
                                  /labels.json          label -> sha256
                                  /tmp/                 writes in progress

Only the gateway writes here, and it hashes what it stores itself: no actor can put bytes
under a hash they do not have. A store is created by ``new`` (a random UUID: an actor
reaches a store only if it was given the id) and every other call names one that exists.
Writes are atomic: written to ``tmp/``, fsynced, renamed into place, the folder fsynced; a
crash leaves at most a file in ``tmp/``, cleared when the gateway starts. Quotas: a write
may not take a store over the writing actor's ``max_bytes`` (objects plus labels), nor the
whole store folder over the server's ``[store] max_bytes``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

import orjson

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
MAX_LABEL = 1024            # bytes of one label's name


class StoreError(Exception):
    """A call that cannot be done (no such store, content or label, bad input): the actor's Err."""


class QuotaExceeded(StoreError):
    """A write over a quota: refused, nothing written."""


class ContentStore:
    def __init__(self, root: Path, cap: int) -> None:
        self.root = root
        self.cap = cap                              # bytes, the whole folder
        self._sizes: dict[str, int] = {}            # store id -> bytes, once counted
        self._total: int | None = None
        root.mkdir(parents=True, exist_ok=True)
        for tmp in root.glob("*/tmp"):              # writes a crash interrupted
            shutil.rmtree(tmp, ignore_errors=True)

    # ---- the v0.2 functions ------------------------------------------------------------------

    def new(self) -> str:
        sid = str(uuid.uuid4())
        (self.root / sid / "objects").mkdir(parents=True)
        _fsync_dir(self.root)
        self._sizes[sid] = 0
        return sid

    def put(self, sid: str, content: bytes, max_bytes: int) -> str:
        """Stores ``content``; its hash (nothing is written twice)."""
        folder = self._store(sid)
        digest = hashlib.sha256(content).hexdigest()
        target = folder / "objects" / digest
        if not target.exists():
            self._charge(sid, len(content), max_bytes)
            _write(folder, target, content)
            self._grew(sid, len(content))
        return digest

    def get(self, sid: str, ref: str) -> bytes:
        path = self._object(sid, ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"store {sid} holds no content {ref}") from None
        if hashlib.sha256(data).hexdigest() != ref:
            raise StoreError(f"content {ref} in store {sid} is damaged on disk")
        return data

    def exists(self, sid: str, ref: str) -> bool:
        return self._object(sid, ref).is_file()

    def label(self, sid: str, label: str, ref: str, max_bytes: int) -> None:
        """Points ``label`` at ``ref`` (which must be stored), replacing what it pointed at."""
        if not self.exists(sid, ref):
            raise StoreError(f"store {sid} holds no content {ref}")
        labels = self._labels(sid)
        labels[_label(label)] = ref
        self._save_labels(sid, labels, max_bytes)

    def get_by_label(self, sid: str, label: str) -> str | None:
        return self._labels(sid).get(_label(label))

    def remove_label(self, sid: str, label: str) -> None:
        labels = self._labels(sid)
        if labels.pop(_label(label), None) is not None:
            self._save_labels(sid, labels, None)

    def remove_from_label(self, sid: str, label: str, ref: str) -> None:
        """Removes ``label`` if it points at ``ref``."""
        labels = self._labels(sid)
        if labels.get(_label(label)) == _ref(ref):
            del labels[label]
            self._save_labels(sid, labels, None)

    def put_at_label(self, sid: str, label: str, content: bytes, max_bytes: int) -> str:
        _label(label)
        ref = self.put(sid, content, max_bytes)
        self.label(sid, label, ref, max_bytes)
        return ref

    def list_labels(self, sid: str) -> list[str]:
        return sorted(self._labels(sid))

    def list_content(self, sid: str) -> list[str]:
        objects = self._store(sid) / "objects"
        return sorted(p.name for p in objects.iterdir() if _HASH.match(p.name))

    def total_size(self, sid: str) -> int:
        self._store(sid)
        return self._size(sid)

    # ---- paths, sizes, quotas ------------------------------------------------------------------

    def _store(self, sid: str) -> Path:
        if not isinstance(sid, str) or not _ID.match(sid):
            raise StoreError(f"{str(sid)[:80]!r} is not a store id (new() gives one)")
        folder = self.root / sid
        if not (folder / "objects").is_dir():
            raise StoreError(f"no store {sid}")
        return folder

    def _object(self, sid: str, ref: str) -> Path:
        return self._store(sid) / "objects" / _ref(ref)

    def _labels(self, sid: str) -> dict[str, str]:
        path = self._store(sid) / "labels.json"
        try:
            return orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return {}

    def _save_labels(self, sid: str, labels: dict[str, str], max_bytes: int | None) -> None:
        folder = self._store(sid)
        path = folder / "labels.json"
        data = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
        old = path.stat().st_size if path.exists() else 0
        if max_bytes is not None and len(data) > old:
            self._charge(sid, len(data) - old, max_bytes)
        _write(folder, path, data)
        self._grew(sid, len(data) - old)

    def _size(self, sid: str) -> int:
        if sid not in self._sizes:
            folder = self.root / sid
            self._sizes[sid] = sum(p.stat().st_size for p in (folder / "objects").iterdir()) + (
                (folder / "labels.json").stat().st_size if (folder / "labels.json").exists() else 0)
        return self._sizes[sid]

    def _charge(self, sid: str, more: int, max_bytes: int) -> None:
        """Refuses a write of ``more`` bytes that would take the store or the folder over its quota."""
        if self._size(sid) + more > max_bytes:
            raise QuotaExceeded(f"store {sid} would hold {self._size(sid) + more} bytes, over this actor's "
                                f"max_bytes ({max_bytes})")
        if self._total is None:
            self._total = sum(self._size(p.name) for p in self.root.iterdir() if _ID.match(p.name)
                              and (p / "objects").is_dir())
        if self._total + more > self.cap:
            raise QuotaExceeded(f"the server's store is full ({self._total} of {self.cap} bytes; "
                                f"server.toml [store] max_bytes)")

    def _grew(self, sid: str, by: int) -> None:
        self._sizes[sid] = self._size(sid) + by
        if self._total is not None:
            self._total += by


def _ref(ref: str) -> str:
    if not isinstance(ref, str) or not _HASH.match(ref):
        raise StoreError(f"{str(ref)[:80]!r} is not a content hash (64 lower-case hex digits)")
    return ref


def _label(label: str) -> str:
    if not isinstance(label, str) or not label or len(label.encode()) > MAX_LABEL:
        raise StoreError(f"a label is a non-empty string of at most {MAX_LABEL} bytes")
    return label


def _write(folder: Path, target: Path, data: bytes) -> None:
    """``data`` at ``target`` whole or not at all, and durable once this returns."""
    tmp_dir = folder / "tmp"
    tmp_dir.mkdir(exist_ok=True)
    tmp = tmp_dir / f"{target.name}.{uuid.uuid4().hex}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target)
        _fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

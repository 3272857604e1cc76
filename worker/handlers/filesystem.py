"""``theater:simple/filesystem``: files under the one directory the grant names, and nothing else.

The directory (``path``, relative to the manifest's directory or absolute) must exist, or
``new_dir = true`` creates it; otherwise the actor does not start, and the message names
the manifest, the handler and the key. It is opened once; every path the actor gives is
resolved by the kernel beneath that descriptor (``worker.beneath``): ``..``, absolute paths
and symlinks that lead outside are refused with ``Err`` and recorded as
``filesystem/permission-denied``, as are files over ``max_file_size`` (default 8 MiB: a read
is recorded with its bytes, so this also bounds one event) and programs not listed in
``allowed_commands``. ``execute-command`` runs a listed program without a shell, in a
directory beneath the root, with only ``PATH`` in its environment, for at most
``command_timeout`` (default 60 s) and never past the call's deadline, its output cut at
``commands.MAX_OUTPUT`` per stream; on the timeout it is killed, with whatever it started.
It runs with the worker's own rights: list only programs you would let the actor run.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from theater.beneath import Escape, open_beneath, split
from theater.errors import ManifestError, TheaterError
from theater.grants import SPECS

from .. import commands
from ..host import Host
from ..values import Err, Ok
from .base import Functions, Handler, register

INTERFACE = "theater:simple/filesystem"
SPEC = SPECS["filesystem"]
_DIR = os.O_PATH | os.O_DIRECTORY


@register
class Filesystem(Handler):
    type = "filesystem"

    def __init__(self, host: Host, config: Mapping[str, Any]) -> None:
        super().__init__(host, config)
        self.limit = SPEC.value(config, "max_file_size")
        self.root = os.open(_root(host, config), _DIR | os.O_CLOEXEC)

    def close(self, reason: str) -> None:
        os.close(self.root)

    def functions(self) -> Functions:
        op = self._op
        return {INTERFACE: {
            "read-file": op("read-file", self._read), "write-file": op("write-file", self._write),
            "list-files": op("list-files", self._list), "delete-file": op("delete-file", self._delete_file),
            "create-dir": op("create-dir", self._create_dir), "delete-dir": op("delete-dir", self._delete_dir),
            "path-exists": op("path-exists", self._exists), "execute-command": op("execute-command", self._execute),
            "execute-nix-command": lambda dir, command: self._denied(
                "execute-nix-command", {"dir": dir, "command": command}, "no grant allows nix commands"),
        }}

    def _op(self, function: str, fn: Callable[..., Any]) -> Callable[..., Ok | Err]:
        def call(path: str, *rest: Any) -> Ok | Err:
            try:
                return Ok(fn(path, *rest))
            except Escape as e:
                return self._denied(function, {"path": path}, f"{path!r} {e.strerror}")
            except _Refused as e:
                return self._denied(function, {"path": path, **e.asked}, e.reason)
            except OSError as e:
                return Err(f"{function} {path!r}: {e.strerror or e}")
        return call

    def _denied(self, function: str, asked: dict[str, Any], reason: str) -> Err:
        self.host.record("filesystem/permission-denied", {"function": function, **asked, "reason": reason})
        return Err(reason)

    def _open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return open_beneath(self.root, path, flags, mode)

    # ---- the operations (paths relative to the root; OSError says what went wrong) -----------

    def _read(self, path: str) -> bytes:
        fd = self._open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(0, "not a regular file")
            if st.st_size > self.limit:
                raise _Refused(f"{path!r} is {st.st_size} bytes, over the grant's max_file_size ({self.limit})")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(self.limit + 1)
            if len(data) > self.limit:          # grew while being read
                raise _Refused(f"{path!r} is over the grant's max_file_size ({self.limit})")
            return data
        finally:
            os.close(fd)

    def _write(self, path: str, content: str) -> None:
        data = content.encode()
        if len(data) > self.limit:
            raise _Refused(f"{len(data)} bytes is over the grant's max_file_size ({self.limit})")
        fd = self._open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    def _list(self, path: str) -> list[str]:
        fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def _in_parent(self, path: str, action: Callable[[str, int], None]) -> None:
        parent, name = split(path)
        fd = self._open(parent, _DIR)
        try:
            action(name, fd)
        finally:
            os.close(fd)

    def _delete_file(self, path: str) -> None:
        self._in_parent(path, lambda name, fd: os.unlink(name, dir_fd=fd))

    def _delete_dir(self, path: str) -> None:
        # rmtree with dir_fd works on descriptors all the way down and never follows a symlink
        self._in_parent(path, lambda name, fd: shutil.rmtree(name, dir_fd=fd))

    def _create_dir(self, path: str) -> None:
        """Like ``mkdir -p``: each missing directory on the way is made beneath the root."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                os.close(self._open(sub, _DIR))
                continue
            except FileNotFoundError:
                pass
            self._in_parent(sub, lambda name, fd: os.mkdir(name, 0o755, dir_fd=fd))

    def _exists(self, path: str) -> bool:
        try:
            os.close(self._open(path, os.O_PATH))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def _execute(self, dir: str, command: str, args: list[str]) -> tuple[str, dict[str, Any]]:
        asked = {"command": command, "args": list(args)}
        if command not in self.config.get("allowed_commands", ()):
            raise _Refused(f"{command!r} is not in the grant's allowed_commands", asked)
        program = command if command.startswith("/") else shutil.which(command, path=commands.SAFE_PATH)
        if program is None:
            raise OSError(0, f"{command!r} is not on {commands.SAFE_PATH}")
        # the program must be gone, and the answer back in wasm, before the call's time is up
        deadline = self.host.call_deadline()
        timeout = SPEC.value(self.config, "command_timeout")
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            raise OSError(0, "not enough time left in the call to run a program")
        fd = self._open(dir, _DIR)
        try:
            outcome = commands.run([program, *args], fd, timeout, self.host.wait)
        except TheaterError as e:               # asked to stop meanwhile: the program was killed
            raise OSError(0, e.message) from None
        finally:
            os.close(fd)
        if outcome.exit_code is None:
            return "error", {"message": f"{command} did not finish within {timeout:.3g}s and was killed"}
        return "success", {"stdout": outcome.stdout, "stderr": outcome.stderr, "exit-code": outcome.exit_code}


class _Refused(Exception):
    """A request the grant does not allow (as opposed to one the filesystem could not do)."""

    def __init__(self, reason: str, asked: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.asked = asked or {}


def _root(host: Host, config: Mapping[str, Any]) -> Path:
    """The granted directory, made if ``new_dir`` asks; a grant that cannot be honoured stops the start."""
    given = config["path"]
    root = Path(host.base) / given          # an absolute path stays as it is
    where = f"{host.manifest.source}: [[handler]] (filesystem) path = {given!r}"
    if not root.is_dir():
        if root.exists():
            raise ManifestError(f"{where}: {root} is not a directory")
        if not config.get("new_dir", False):
            raise ManifestError(f"{where}: no such directory {root} (new_dir = true would create it)")
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise ManifestError(f"{where}: cannot create {root}: {e.strerror or e}") from None
    return root

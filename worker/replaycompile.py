"""A component a replay runs that the cache lacks, compiled by the server's compile step
(``python -m worker compile``, worker/compiler.py) in a short-lived process of its own.

The replayer must have no thread but its own when it confines itself (worker/replaysandbox.py:
Landlock, capabilities and a network namespace bind only the calling thread and the threads it
starts later), so it cannot compile with wasmtime's compile threads; that process can, and
Cranelift compiles the component's functions on every core. It is held as the server holds it
where there is no cgroup: RLIMIT_DATA at ``[compile] memory`` (``--data-limit``), killed after
``[compile] timeout``; it dies with the replayer.

It writes through two descriptors (``--out``). Where the cache is this user's own (the CLI's user
owns the home), of files beside their places in it, renamed into place once it has succeeded, as
the server's (supervisor/compiled.py): later replays and starts load them. Elsewhere (a read-only
home, another user's), of temporary files already unlinked: nothing is left. Either way the
replayer reads the compiled form back and keeps it (worker/replaycomponents.py).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from theater._linux import signal_name
from theater._units import format_size, human_size
from theater.compiling import PREFIX, ending
from theater.config import Compile
from theater.errors import ComponentError, TheaterError
from theater.paths import Home, compiled_path, shape_path

from .component import Shape


class AtCompileLimit(Exception):
    """A component not compiled (or loaded) within a ``[compile]`` limit: (which limit, what it says)."""


@dataclass(frozen=True)
class Compiler:
    """How a replay compiles: in ``home``'s cache, within ``limits`` (set in ``source``)."""

    home: Home
    limits: Compile
    source: Path

    def compile(self, wasm: Path, digest: str, key: str, fuel: bool) -> tuple[bytes, Shape]:
        """``wasm`` compiled (cached under ``key``), and its shape. Raises ComponentError (not a
        valid component, or its bytes no longer ``digest``'s), AtCompileLimit, or TheaterError
        (the compile process failed)."""
        cache = self.home.cache
        outputs = _Outputs([compiled_path(cache, key, fuel), shape_path(cache, key)], _own(cache))
        try:
            status, out = self._run(wasm, digest, key, fuel, outputs)
            self._check(status, out, wasm)
            return outputs.take()
        finally:
            outputs.discard()

    def _run(self, wasm: Path, digest: str, key: str, fuel: bool, outputs: _Outputs) -> tuple[int, bytes]:
        """The compile process's exit status and what it said (its last 64 KiB)."""
        fds = [f.fileno() for f in outputs.files]
        cmd = [sys.executable, "-m", "worker", "compile", "--home", str(self.home.root), key,
               "--file", str(wasm.absolute()), "--digest", digest, *(["--fuel"] if fuel else []),
               "--data-limit", str(self.limits.memory), "--out", ",".join(map(str, fds))]
        with tempfile.TemporaryFile() as said:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=said, stderr=said, pass_fds=fds)
            except OSError as e:
                raise TheaterError(f"the compile process did not start ({e})") from None
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.write(b"go\n")          # (the server writes it once the process is in its cgroup)
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                status = proc.wait(self.limits.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AtCompileLimit("compile_timeout", (
                    f"the replay reached its compile timeout ([compile] timeout): compiling {_component(wasm)} "
                    f"took longer than {self.limits.timeout:g}s; raise `timeout` under [compile] in "
                    f"{self.source}")) from None
            said.seek(0)
            return status, said.read()[-65536:]

    def _check(self, status: int, out: bytes, wasm: Path) -> None:
        """Raises what went wrong, as the server tells it (supervisor/compiles.py)."""
        how, said = ending(status, out)
        if how == "ok":
            return
        if how == "invalid":
            raise ComponentError(str(said["error"]))
        if how == "memory":
            raise AtCompileLimit("compile_memory", (
                f"the replay reached its compile memory limit ([compile] memory): {_component(wasm)} does "
                f"not compile within {format_size(self.limits.memory)}; raise `memory` under [compile] in "
                f"{self.source}"))
        lines = out.decode(errors="replace").strip().splitlines()
        what = f"status {status}" if status >= 0 else signal_name(-status)
        raise TheaterError(f"the compile process failed ({what}): {lines[-1][:300] if lines else 'it said nothing'}")


class _Outputs:
    """The two files the compile process writes (the compiled form, the shape): in the cache
    beside where they go (``cached``), else anonymous temporary files."""

    def __init__(self, final: list[Path], cached: bool) -> None:
        self.final = final
        self.parts: list[Path] = []
        self.files: list[IO[bytes]] = []
        if cached:
            try:
                for path in final:
                    path.parent.mkdir(parents=True, exist_ok=True)     # (the user's umask, as the cache's writes)
                    fd, name = tempfile.mkstemp(prefix=PREFIX, dir=path.parent)
                    self.parts.append(Path(name))
                    self.files.append(os.fdopen(fd, "w+b"))
            except OSError:                                            # a read-only home
                self.discard()
        if not self.files:
            self.files = [tempfile.TemporaryFile() for _ in final]     # noqa: SIM115 - closed by discard

    def take(self) -> tuple[bytes, Shape]:
        """What the compile process wrote; into the cache, if it is to go there."""
        compiled, shape = (_read(f) for f in self.files)
        try:
            parsed = Shape(**orjson.loads(shape))
        except (orjson.JSONDecodeError, TypeError) as e:
            raise TheaterError(f"internal error: the compile process wrote a shape that does not read ({e})") \
                from None
        if self.parts:
            with contextlib.suppress(OSError):      # (a cache that cannot take it: only later replays lose)
                for f, part, final in zip(self.files, self.parts, self.final, strict=True):
                    os.fchmod(f.fileno(), 0o640)    # the workers' group reads a cache shared with them (--user)
                    os.replace(part, final)         # the shape last: what is looked for first is whole
                self.parts = []
        return compiled, parsed

    def discard(self) -> None:
        for f in self.files:
            f.close()
        for part in self.parts:
            part.unlink(missing_ok=True)
        self.files, self.parts = [], []


def trusted(path: Path) -> bool:
    """Whether the compiled form at ``path`` may be loaded: it and every directory above it are
    this user's or root's, and none can be changed by anyone else (but a sticky directory's other
    entries: ssh's rule for its keys). A compiled form is native code, run as it is: another
    user's cache (root replaying their home) holds whatever they put there."""
    me = os.geteuid()
    real = path.resolve()
    for p in (real, *real.parents):
        try:
            st = p.lstat()
        except OSError:
            return False
        if st.st_uid not in (me, 0) or stat.S_ISLNK(st.st_mode):
            return False
        if st.st_mode & 0o022 and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
            return False
    return True


def _own(cache: Path) -> bool:
    """The cache is this user's: a replay adds to it as the server would. Not another user's,
    whose server would empty a cache holding files it did not make (root replaying their home)."""
    try:
        st = cache.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()


def _read(f: IO[bytes]) -> bytes:
    f.seek(0)
    return f.read()


def _component(wasm: Path) -> str:
    try:
        return f"the component ({human_size(wasm.stat().st_size)})"
    except OSError:
        return "the component"


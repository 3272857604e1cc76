"""Where things live under ``$THEATER_HOME``, and the sockets every process agrees on.

    keys/           host.key (Ed25519, 0600), host.pub (theater.keys); CURVE: curve/, authorized/,
                    servers/ (theater.curve_keys)
    keys/secrets/   named secrets for outgoing requests (one file each, 0600; see theater.secrets)
    run/            theater.sock (management), control.sock, chain.sock, chain-stream.sock, events.sock,
                    gateway.sock, w/<pid>.sock, server.json
    chains.db       the event chains (SQLite, WAL)
    actors/         the top-level actors a restarted server brings back (<id>.json)
    components/     uploaded components by SHA-256 (the source of every start and restart)
    cache/          compiled components: <wasmtime version>/<engine flavour>/<sha256>.a<adapter>.cwasm, and
                    each component's checked shape: <wasmtime version>/<sha256>.shape<shape>.json
    store/          the content store handler's data (written by the gateway process only)
    logs/           server log when not logging to stdout
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import beneath
from .errors import UsageError

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_IPC_PATH_MAX = 107


@functools.cache
def wasmtime_version() -> str:
    """A compiled component only loads into the wasmtime that made it: part of every cache key.
    Read from the package metadata, so the server and the CLI need not import wasmtime (nor
    importlib.metadata, ~25 ms, before they need it)."""
    from importlib import metadata

    return metadata.version("wasmtime")


def default_home() -> Path:
    env = os.environ.get("THEATER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".theater"


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, arg: str | os.PathLike[str] | None = None) -> Home:
        """``--home`` if given, else ``$THEATER_HOME``, else ``~/.theater``; always absolute."""
        root = Path(arg).expanduser() if arg else default_home()
        return cls(root.absolute())

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def chains_db(self) -> Path:
        return self.root / "chains.db"

    @property
    def actors(self) -> Path:
        return self.root / "actors"

    @property
    def components(self) -> Path:
        return self.root / "components"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def compiled(self, sha256: str, fuel: bool) -> Path:
        return compiled_path(self.cache, sha256, fuel)

    def shape(self, sha256: str) -> Path:
        return shape_path(self.cache, sha256)

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def host_key(self) -> Path:
        return self.keys / "host.key"

    @property
    def host_pub(self) -> Path:
        return self.keys / "host.pub"

    @property
    def management_socket(self) -> Path:
        return self.run / "theater.sock"

    def ensure(self) -> None:
        """Creates what is missing of the layout, private to its owner (0700: what a home holds,
        every event and state, is nobody else's to read). Existing folders keep their modes
        (see ``make_private``, and supervisor.server for what --user opens to workers)."""
        if not self.root.exists():
            self.root.mkdir(mode=0o700, parents=True)
            os.chmod(self.root, 0o700)           # whatever the umask
        for d in (self.keys, self.run, self.run / "w", self.components, self.cache, self.store, self.logs):
            if not d.exists():
                d.mkdir(mode=0o700)
                os.chmod(d, 0o700)
        self.check_socket_paths()

    def make_private(self) -> None:
        """Takes group and other access away from everything in the home: folders 0700 at most,
        files 0600 at most (a server before issue 16 left chains.db and its log 0644 in a 0755
        home). Symlinks are left alone (their targets are not the home's)."""
        for top, dirs, files in os.walk(self.root):
            for name in (top, *(os.path.join(top, n) for n in dirs + files)):
                with contextlib.suppress(FileNotFoundError):
                    st = os.lstat(name)
                    if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o7077:
                        os.chmod(name, stat.S_IMODE(st.st_mode) & 0o700)

    def check_socket_paths(self) -> None:
        longest = self.run / "w" / "4194304.sock"
        if len(os.fsencode(longest)) > _IPC_PATH_MAX:
            raise UsageError(
                f"THEATER_HOME {self.root} is too long for its unix sockets "
                f"(run/ paths must stay under {_IPC_PATH_MAX} bytes); choose a shorter --home"
            )

    # Endpoints (ZeroMQ addresses).
    def ipc(self, name: str) -> str:
        return f"ipc://{self.run / name}"

    @property
    def management_endpoint(self) -> str:
        return self.ipc("theater.sock")

    @property
    def control_endpoint(self) -> str:
        return self.ipc("control.sock")

    @property
    def chain_endpoint(self) -> str:
        return self.ipc("chain.sock")

    @property
    def chain_stream(self) -> Path:
        """Where workers ship their events to the chain (a plain unix stream: theater.stream)."""
        return self.run / "chain-stream.sock"

    @property
    def events_endpoint(self) -> str:
        return self.ipc("events.sock")

    @property
    def gateway_endpoint(self) -> str:
        return self.ipc("gateway.sock")

    @property
    def console_socket(self) -> Path:
        """The web console's way to the management socket (its process is the server's child)."""
        return self.run / "console.sock"

    @property
    def console_endpoint(self) -> str:
        return f"ipc://{self.console_socket}"

    @property
    def secrets(self) -> Path:
        return self.keys / "secrets"

    def worker_socket(self, pid: int) -> Path:
        """A worker's inbox; named by pid so each incarnation gets its own address."""
        return self.run / "w" / f"{pid}.sock"

    def worker_endpoint(self, pid: int) -> str:
        return f"ipc://{self.worker_socket(pid)}"


# What is compiled is the actor inside the byte adapter the worker generates around it
# (worker/adapter.py): a new adapter means new compiled forms, so its version is in their names.
ADAPTER_VERSION = 1
# What a component's shape holds (worker.component.Shape): when its fields change, so does this,
# and a shape of another version is not read (the component compiles again). A new adapter
# needs no new shape version: its compiled forms have new names, and compiling writes the shape.
SHAPE_VERSION = 2


def compiled_path(cache: Path, sha256: str, fuel: bool) -> Path:
    """A component compiled for the worker's engine (fuel on or off: each loads only into its own
    kind of engine). ``python -m worker compile`` writes it; workers only load it."""
    return cache / wasmtime_version() / ("fuel" if fuel else "epoch") / f"{sha256}.a{ADAPTER_VERSION}.cwasm"


def shape_path(cache: Path, sha256: str) -> Path:
    """What a component imports and exports, checked once, beside its compiled forms."""
    return cache / wasmtime_version() / f"{sha256}.shape{SHAPE_VERSION}.json"


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Writes ``path`` whole or not at all (a temporary file renamed over it): a crash or a
    concurrent writer never leaves a torn file. ``mode``: the file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_regular(path: Path, limit: int, root: str | Path | None = None) -> bytes:
    """A regular file's bytes, at most ``limit`` of them. Anything else is refused with an
    OSError whose strerror says why, before it is opened where possible and in any case
    without blocking: a FIFO's open() waits for a writer, and a device may do anything on
    open() or read() (issue 16, finding 1). With ``root`` (the directory ``within`` checked
    ``path`` against), the open does not leave it either, whatever was swapped in since."""
    st = os.stat(path)
    _check_regular(st, limit)
    fd = _open_beneath(Path(root), path) if root is not None else os.open(path, _READ)
    try:
        _check_regular(os.fstat(fd), limit)        # what was opened, if it changed since the stat
        chunks, size = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise OSError(errno.EFBIG, f"larger than the {limit}-byte limit")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _open_beneath(root: Path, path: Path) -> int:
    """``path`` (a real path inside ``root``, from ``within``), opened for reading without leaving
    ``root``: an actor that can write inside it could otherwise swap a directory or the file for a
    symlink out of it between the check and the open (the server reads as its own user)."""
    top = root.resolve()
    outside = OSError(errno.EACCES, f"outside {top}, the directory the actor may read")
    if not path.is_relative_to(top):
        raise outside
    dirfd = os.open(top, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return beneath.open_beneath(dirfd, str(path.relative_to(top)), _READ)
    except beneath.Escape:
        raise outside from None
    except OSError as e:            # without openat2 every link is refused: one is there now
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(errno.EACCES, "it changed since it was checked (a link now stands in its path)") from None
        raise
    finally:
        os.close(dirfd)


def check_regular(path: Path, limit: int) -> None:
    """OSError, saying why, unless ``path`` is a regular file of ``limit`` bytes at most (nothing
    is opened: for a file another step reads, as ``read_regular`` would take it)."""
    _check_regular(os.stat(path), limit)


def _check_regular(st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, f"not a regular file (a {_kind(st.st_mode)})")
    if st.st_size > limit:
        raise OSError(errno.EFBIG, f"{st.st_size} bytes, over the {limit}-byte limit")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def within(root: str | Path, given: str, base: str | Path | None = None) -> Path:
    """``given`` (relative to ``base``, default ``root``) as a real path inside ``root``; an OSError
    says why not. For paths an actor names (its children's manifests, components, initial states):
    absolute paths are refused, and symlinks and ``..`` are resolved before the check, so neither
    leads out of ``root``."""
    if not given or Path(given).is_absolute():
        raise OSError(errno.EACCES, "an actor may only name relative paths")
    if "\0" in given:                 # os.stat and resolve() would raise ValueError, not OSError
        raise OSError(errno.EINVAL, "a path may not contain a NUL byte")
    try:
        top = Path(root).resolve()
        real = (Path(base if base is not None else root) / given).resolve()
    except RuntimeError:              # a symlink loop (resolve raises RuntimeError for it until Python 3.13)
        raise OSError(errno.ELOOP, "a loop of symbolic links") from None
    if not real.is_relative_to(top):
        raise OSError(errno.EACCES, f"outside {top}, the directory the actor may read")
    return real
